"""The memory-sizing guide: expected warm latency and cost per million requests by Lambda memory size.

The prices and the Amdahl fit that stretches the one- and two-thread measurements to a
function's vCPUs come from endpoint_client.pricing, which the batch cost estimate uses too.
"""

from __future__ import annotations

from endpoint_client.pricing import cost_per_million_usd, expected_latency_ms

VCPUS_BY_MEMORY_MB = {1769: 1.0, 3008: 1.7, 5307: 3.0}


def sizing_guide(one_thread_ms: float, two_threads_ms: float, peak_rss_mb: float) -> list[dict]:
    """One row per memory size: vCPUs, expected p50 latency, cost per million requests, fits in memory."""
    rows = []
    for memory_mb, vcpus in VCPUS_BY_MEMORY_MB.items():
        latency = expected_latency_ms(one_thread_ms, two_threads_ms, vcpus)
        rows.append(
            {
                "memory_mb": memory_mb,
                "vcpus": vcpus,
                "expected_p50_ms": round(latency, 1),
                "cost_per_million_usd": round(cost_per_million_usd(memory_mb, latency), 2),
                "measured": vcpus in {1.0, 2.0},
                "fits_in_memory": peak_rss_mb < memory_mb,
            }
        )
    return rows
