"""The Markdown tables of a results.json, as pasted into docs/benchmarks.md and docs/sizing.md.

python -m bench.report [bench/results/results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path(__file__).parent / "results" / "results.json"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def spread(summary: dict[str, float]) -> str:
    return f"{summary['p50']:.1f} / {summary['p95']:.1f}"


def warm_table(models: dict[str, Any]) -> str:
    rows = []
    for name, result in models.items():
        latency, ratio = result["warm"]["latency_ms"], result["ratios"]
        rows.append(
            [
                name,
                spread(latency["floor"]),
                spread(latency["handler_raw"]),
                spread(latency["handler_json"]),
                f"{ratio['warm_raw_p50_vs_floor']:.2f}x / {ratio['warm_json_p50_vs_floor']:.2f}x",
                f"{latency['served_network']['p50']:.1f} ({ratio['warm_raw_p50_vs_served_network']:.2f}x)",
                f"{latency['floor_large_full_decode']['p50']:.0f} / {latency['floor_large']['p50']:.0f}"
                f" / {latency['handler_raw_large']['p50']:.0f}",
                large_input(latency),
                f"{latency['peer_reload']['p50']:.0f} ({ratio['peer_reload_p50_vs_handler']:.0f}x)",
            ]
        )
    return table(
        [
            "model",
            "floor p50 / p95 ms",
            "handler raw JPEG",
            "handler JSON base64",
            "p50 vs floor (raw / JSON)",
            "served network direct p50 ms (raw handler vs it)",
            "12 MP JPEG p50: full decode / floor / handler",
            "12 MP JPEG input p50 ms: full decode / served (speed-up)",
            "reload per request p50 ms (vs handler)",
        ],
        rows,
    )


def large_input(latency: dict[str, Any]) -> str:
    """The 12 MP JPEG's decode + preprocess, full decode against serving's ("-" before it was measured)."""
    if "input_large" not in latency:
        return "-"
    full, served = latency["input_large_full_decode"]["p50"], latency["input_large"]["p50"]
    return f"{full:.0f} / {served:.0f} ({full / served:.1f}x)"


def cold_table(models: dict[str, Any]) -> str:
    rows = []
    for name, result in models.items():
        cold = result["cold_start_s"]
        bare, local, s3 = (cold[key]["median"] for key in ("floor_bare", "handler_local", "handler_s3"))
        floor = cold.get("floor")  # absent from results of runs before it was measured
        parts = f"{floor['import_torch_s']:.2f} + {floor['build_load_forward_s']:.2f}" if floor else ""
        rows.append(
            [
                name,
                f"{floor['seconds']:.2f} ({parts})" if floor else "-",
                f"{bare:.2f}",
                f"{local:.2f}",
                f"{s3:.2f}",
                f"{local / bare:.2f}x / {s3 / bare:.2f}x",
                f"{local / floor['seconds']:.2f}x / {s3 / floor['seconds']:.2f}x" if floor else "-",
                f"{cold['floor_bare']['peak_rss_mb']:.0f} / {cold['handler_local']['peak_rss_mb']:.0f}"
                f" / {cold['handler_s3']['peak_rss_mb']:.0f}",
            ]
        )
    return table(
        [
            "model",
            "floor s (import torch + build, load, forward)",
            "bare script s",
            "serving, local store s",
            "serving, S3 s",
            "vs bare (local / S3)",
            "vs floor (local / S3)",
            "peak RSS MiB: bare / serving local / S3",
        ],
        rows,
    )


def phases_table(models: dict[str, Any]) -> str:
    """Where the fastest cold start of each kind spent its time, in ms."""
    rows = []
    for name, result in models.items():
        for store in ("handler_local", "handler_s3"):
            cold = result["cold_start_s"][store]
            spent = ", ".join(
                f"{phase} {seconds * 1000:.0f}" for phase, seconds in cold["phases_s_of_fastest"].items()
            )
            init = cold.get("init_phases_ms_of_fastest", {})  # absent before the bench recorded it
            rows.append(
                [
                    name,
                    store.removeprefix("handler_"),
                    spent,
                    ", ".join(f"{k} {v:.0f}" for k, v in init.items()),
                ]
            )
    return table(["model", "store", "process, ms", "init as the handler logged it, ms"], rows)


def runtime_client_table(models: dict[str, Any]) -> str:
    """Init and first response under awslambdaric, next to the in-process cold start (spawn to first 200)."""
    rows = []
    for name, result in models.items():
        measured = result.get("runtime_client_init")  # absent before the bench measured it
        if measured is None:
            continue
        for store in ("local", "s3"):
            init_s = measured[store]["init_s"]["median"]
            response_s = measured[store]["first_response_s"]["median"]
            in_process = result.get("cold_start_s", {}).get(f"handler_{store}")
            rows.append(
                [
                    name,
                    store,
                    f"{init_s:.2f}",
                    f"{response_s * 1000:.0f}",
                    f"{init_s + response_s:.2f}",
                    f"{in_process['median']:.2f}" if in_process else "-",
                ]
            )
    return table(
        [
            "model",
            "store",
            "init s (spawn to first `next`)",
            "first response ms",
            "init + first response s",
            "in-process cold start s (spawn to first 200)",
        ],
        rows,
    )


def runtime_client_section(models: dict[str, Any], repeats: int) -> list[str]:
    """The runtime client's table under its heading, or nothing for results that lack it."""
    measured = [
        result["runtime_client_init"] for result in models.values() if "runtime_client_init" in result
    ]
    if not measured:
        return []
    runs_as = measured[0]["runs_as"]
    heading = (
        f"**Init under the runtime interface client** (median of {repeats}; `{measured[0]['command']}`"
        f" in the image's task root, as {runs_as['user']} with {runs_as['python']})"
    )
    return [f"{heading}\n\n{runtime_client_table(models)}"]


def throughput_table(models: dict[str, Any], batch_size: int) -> str:
    rows = []
    for name, result in models.items():
        for threads, rates in result["warm"]["throughput"].items():
            rows.append(
                [
                    name,
                    threads,
                    rates["handler_single"]["images_per_s"],
                    rates["handler_batch"]["images_per_s"],
                    rates["floor_single"]["images_per_s"],
                    rates["floor_batch"]["images_per_s"],
                ]
            )
    return table(
        [
            "model",
            "threads",
            "handler, 1 image/request",
            f"handler, {batch_size} images/request",
            "floor, 1 image",
            f"floor, batch of {batch_size}",
        ],
        rows,
    )


def batch_worker_table(models: dict[str, Any]) -> str:
    rows = []
    for name, result in models.items():
        threads = result["batch_worker"]["threads"]
        rows.append(
            [name]
            + [
                f"{threads[count]['images_per_s']:.1f} ({threads[count]['ms_per_image']:.1f} ms)"
                for count in ("1", "2")
            ]
        )
    return table(["model", "1 thread: images/s (ms/image)", "2 threads: images/s (ms/image)"], rows)


def sizing_table(models: dict[str, Any]) -> str:
    rows = []
    for name, result in models.items():
        for row in result["sizing"]:
            rows.append(
                [
                    name,
                    row["memory_mb"],
                    f"{row['vcpus']:g}",
                    f"{row['expected_p50_ms']:.0f}" + ("" if row["measured"] else " (extrapolated)"),
                    f"{row['cost_per_million_usd']:.2f}",
                ]
            )
    return table(["model", "memory MB", "vCPU", "expected warm p50 ms", "USD per 1M requests"], rows)


def targets_table(targets: list[dict[str, Any]]) -> str:
    rows = []
    for row in targets:
        unit = row.get("unit", "x")  # runs before RSS had a target recorded ratios only
        measured = row.get("measured", row.get("ratio"))
        number = "{:.2f}" if unit == "x" else "{:.0f}"
        rows.append(
            [
                row["model"],
                row["what"],
                number.format(measured) + unit,
                "<= " + number.format(row["target"]) + unit,
                "met" if row["met"] else "NOT met",
            ]
        )
    return table(["model", "what", "measured", "target", ""], rows)


def markdown_report(results: dict[str, Any]) -> str:
    models, settings = results["models"], results["settings"]
    # Results from before the batch worker was benchmarked have no such figures.
    batch_worker = all("batch_worker" in result for result in models.values())
    return "\n\n".join(
        [
            f"**Warm latency, ms** (torch threads: {next(iter(models.values()))['warm']['threads']}, "
            f"{settings['iterations']} requests per variant)\n\n" + warm_table(models),
            f"**Cold start to the first response, s** (median of {settings['cold_repeats']})\n\n"
            + cold_table(models),
            "**Cold start phases**\n\n" + phases_table(models),
            *runtime_client_section(models, settings["cold_repeats"]),
            "**Throughput, images/s**\n\n" + throughput_table(models, settings["batch_size"]),
            *(
                [
                    "**Batch worker, images/s** (what `endpoint_client batch` prices with)\n\n"
                    + batch_worker_table(models)
                ]
                if batch_worker
                else []
            ),
            "**Memory sizing**\n\n" + sizing_table(models),
            "**Targets**\n\n" + targets_table(results["targets"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "results",
        nargs="?",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"a results.json (default: {DEFAULT_RESULTS})",
    )
    arguments = parser.parse_args(argv)
    try:
        results = json.loads(arguments.results.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        parser.error(f"cannot read {arguments.results}: {error}")
    print(markdown_report(results))


if __name__ == "__main__":
    main()
