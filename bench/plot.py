"""latency.png: warm latency, cold start and throughput per model, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

WARM_SERIES = {
    "floor": "floor (direct)",
    "handler_raw": "handler, raw JPEG",
    "handler_json": "handler, JSON base64",
    "peer_reload": "reload per request",
}
COLD_SERIES = {
    "floor_bare": "bare script",
    "handler_local": "serving, local",
    "handler_s3": "serving, S3 (moto behind a latency proxy)",
}


def grouped_bars(
    axis: Any, groups: list[str], series: dict[str, list[float]], errors: dict | None = None
) -> None:
    width = 0.8 / len(series)
    for index, (label, values) in enumerate(series.items()):
        positions = [group + index * width for group in range(len(groups))]
        axis.bar(positions, values, width, label=label, yerr=(errors or {}).get(label), capsize=2)
    axis.set_xticks([group + 0.4 - width / 2 for group in range(len(groups))], groups, fontsize=8)
    axis.legend(fontsize=7)


def plot_results(results: dict[str, Any], path: Path) -> None:
    models = results["models"]
    names = list(models)
    figure, (warm_axis, cold_axis, rate_axis) = plt.subplots(1, 3, figsize=(16, 5))

    warm_p50 = {
        label: [models[m]["warm"]["latency_ms"][key]["p50"] for m in names]
        for key, label in WARM_SERIES.items()
    }
    warm_err = {
        label: [
            [0 for _ in names],
            [
                models[m]["warm"]["latency_ms"][key]["p95"] - models[m]["warm"]["latency_ms"][key]["p50"]
                for m in names
            ],
        ]
        for key, label in WARM_SERIES.items()
    }
    grouped_bars(warm_axis, names, warm_p50, warm_err)
    warm_axis.set_yscale("log")
    warm_axis.set_ylim(bottom=1)
    warm_axis.set_ylabel("ms per request (p50, whisker to p95; log scale)")
    warm_axis.set_title("Warm latency, 512x600 JPEG")

    cold = {
        label: [models[m]["cold_start_s"][key]["median"] for m in names] for key, label in COLD_SERIES.items()
    }
    grouped_bars(cold_axis, names, cold)
    cold_axis.set_ylabel("seconds from spawn to first response (median)")
    cold_axis.set_title("Cold start")

    batch = results["settings"]["batch_size"]
    rates = {
        f"{threads} thread{'s' if threads == '2' else ''}, {kind}": [
            models[m]["warm"]["throughput"][threads][key]["images_per_s"] for m in names
        ]
        for threads in ("1", "2")
        for key, kind in (("handler_single", "1 image"), ("handler_batch", f"batch of {batch}"))
    }
    grouped_bars(rate_axis, names, rates)
    rate_axis.set_ylabel("images per second through the handler")
    rate_axis.set_title("Throughput")

    machine = results["machine"]
    figure.suptitle(
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} ({machine['date_utc']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
