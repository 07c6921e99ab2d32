"""SnapStart's lifecycle under AWS's runtime interface client, beside today's cold start.

    python -m bench.snapstart [--models MODEL ...] [--repeats N]

Per model and store, each repeat starts two execution environments the way the rehearsal tier
does (lambda_rehearsal): one on demand (today's cold start: spawn to the first `next`, then the
first answer), and one initialised for a snapshot (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start),
which the emulator then restores. From the second: the snapshot's footprint (peak RSS at the
before-snapshot hook, which drives Lambda's restore time and the cache and restore prices, both
per GB), the after-restore hooks' time (the function's own log), the emulator's restore time
(restore/next answered to the first `next`) and the first answer after the restore.

What cannot be measured here is Lambda's own part of a restore: reading the snapshot's memory
back into a microVM. The emulator's restore is the same process resumed, so it holds only the
hooks and the runtime's return to polling.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.artifacts import PublishedModel
from bench.child import BenchFailure
from bench.events import raw_image_event
from bench.harness import MODELS, Bench, function_env, published_models, settings_for
from bench.report import table
from bench.runtime_client import INVOCATION_TIMEOUT_S, first_start, runs_as
from bench.stats import summarise_s
from lambda_rehearsal.function import Function, build_task_root, make_writable
from lambda_src.contract import API_HANDLER, ENV_LAMBDA_INITIALIZATION_TYPE, SNAP_START_INITIALIZATION

STORES = ("local", "s3")


def measure_snap_start(
    folder: Path, environments: dict[str, dict[str, str]], photo: bytes, repeats: int
) -> dict[str, Any]:
    """`repeats` on-demand and snapshotted environments per store (environments: store -> variables).

    `folder` must be readable by everyone (the client may run as `nobody`).
    """
    task_root = build_task_root(Path(tempfile.mkdtemp(prefix="task-root-", dir=folder)))
    cold: dict[str, list[tuple[float, float]]] = {store: [] for store in environments}
    snapped: dict[str, list[dict[str, float]]] = {store: [] for store in environments}
    try:
        for _ in range(repeats):  # interleaved, so a slower spell of the machine hits both
            for store, environment in environments.items():
                cold[store].append(first_start(task_root, folder, environment, photo))
                snapped[store].append(snapshot_and_restore(task_root, folder, environment, photo))
    finally:
        make_writable(task_root)
    result: dict[str, Any] = {"command": f"python -m awslambdaric {API_HANDLER}", "runs_as": runs_as()}
    for store in environments:
        runs = snapped[store]
        result[store] = {
            "cold_start": {
                "init_s": summarise_s([init_s for init_s, _ in cold[store]]),
                "first_response_s": summarise_s([response_s for _, response_s in cold[store]]),
            },
            "snapshot_init_s": summarise_s([run["snapshot_init_s"] for run in runs]),
            "snapshot_peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "restore_hooks_s": summarise_s([run["restore_hooks_ms"] / 1000 for run in runs]),
            "restore_s": summarise_s([run["restore_s"] for run in runs]),
            "first_response_after_restore_s": summarise_s([run["first_response_s"] for run in runs]),
        }
    return result


def snapshot_and_restore(
    task_root: Path, folder: Path, environment: dict[str, str], photo: bytes
) -> dict[str, float]:
    """One environment initialised for a snapshot, restored, and asked one raw-JPEG request."""
    work_dir = Path(tempfile.mkdtemp(prefix="function-", dir=folder))
    work_dir.chmod(0o755)
    snap_start = {**environment, ENV_LAMBDA_INITIALIZATION_TYPE: SNAP_START_INITIALIZATION}
    function = Function(task_root, snap_start, work_dir=work_dir, timeout_s=INVOCATION_TIMEOUT_S)
    try:
        function.start()
        if function.api.init_error is not None:
            raise BenchFailure(f"no snapshot: {function.api.init_error}\n{function.log()[-3000:]}")
        function.restore()
        if function.api.restore_error is not None:
            raise BenchFailure(f"the restore failed: {function.api.restore_error}")
        asked = time.monotonic()
        response = function.invoke(raw_image_event(photo))
        response_s = time.monotonic() - asked
    finally:
        function.stop()
    if response.get("statusCode") != 200:
        raise BenchFailure(f"the function answered {response.get('statusCode')}: {response.get('body')}")
    logged = {record.get("message"): record for record in _records(function.log())}
    assert function.init_s is not None and function.restore_s is not None
    return {
        "snapshot_init_s": function.init_s,
        "peak_rss_mb": float(logged["snapshot ready"]["peak_rss_mb"]),
        "restore_hooks_ms": float(logged["restored"]["restore_hooks_ms"]),
        "restore_s": function.restore_s,
        "first_response_s": response_s,
    }


def _records(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def snap_start_table(models: dict[str, Any]) -> str:
    """Per model and store: today's cold start beside the snapshot's footprint and a restore's parts."""
    rows = []
    for name, result in models.items():
        measured = result.get("snap_start")
        if measured is None:
            continue
        for store in ("local", "s3"):
            if store not in measured:
                continue
            figures = measured[store]
            cold = figures["cold_start"]
            rows.append(
                [
                    name,
                    store,
                    f"{cold['init_s']['median'] + cold['first_response_s']['median']:.2f}",
                    f"{figures['snapshot_peak_rss_mb']:.0f}",
                    f"{figures['restore_hooks_s']['median'] * 1000:.1f}",
                    f"{figures['restore_s']['median'] * 1000:.0f}",
                    f"{figures['first_response_after_restore_s']['median'] * 1000:.0f}",
                ]
            )
    return table(
        [
            "model",
            "store",
            "cold start today s (init + first answer)",
            "snapshot: peak RSS MiB",
            "after-restore hooks ms",
            "emulated restore ms (hooks + back to polling)",
            "first answer after restore ms",
        ],
        rows,
    )


def measure_snap_start_of(
    bench: Bench, model: PublishedModel, stores: tuple[str, ...] = STORES
) -> dict[str, Any]:
    """The SnapStart lifecycle beside today's cold start, from each of the bench's stores."""
    environments = {
        store: function_env(bench.store_uri(store), model.model_name, bench.s3_endpoint) for store in stores
    }
    return measure_snap_start(
        bench.workdir, environments, bench.photo_path.read_bytes(), bench.settings.cold_repeats
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.snapstart", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["resnet18"], help="default: resnet18")
    parser.add_argument(
        "--repeats", type=int, default=3, help="environments of each kind per store (default 3)"
    )
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES), help="default: both")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1:
        parser.error("--repeats must be 1 or more")
    settings = replace(settings_for(tuple(arguments.models)), cold_repeats=arguments.repeats)
    with published_models(settings) as (bench, published):
        results = {
            name: {"snap_start": measure_snap_start_of(bench, model, tuple(arguments.stores))}
            for name, model in published.items()
        }
    print(json.dumps(results, indent=2))
    print(snap_start_table(results))


if __name__ == "__main__":
    main()
