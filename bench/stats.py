"""Summaries of timing samples."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], fraction: float) -> float:
    """Linear-interpolated percentile of `samples` (fraction in [0, 1])."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise_ms(samples_s: list[float]) -> dict[str, float]:
    """p50, p95, mean, min (milliseconds) and the sample count of timings in seconds."""
    milliseconds = [sample * 1000 for sample in samples_s]
    return {
        "p50": round(percentile(milliseconds, 0.50), 2),
        "p95": round(percentile(milliseconds, 0.95), 2),
        "mean": round(statistics.fmean(milliseconds), 2),
        "min": round(min(milliseconds), 2),
        "n": len(milliseconds),
    }


def summarise_s(samples_s: list[float]) -> dict[str, float | list[float]]:
    """Median, min and max (seconds) and every run, for a handful of cold starts."""
    return {
        "median": round(statistics.median(samples_s), 3),
        "min": round(min(samples_s), 3),
        "max": round(max(samples_s), 3),
        "runs": [round(sample, 3) for sample in samples_s],
    }
