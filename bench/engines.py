"""`python -m bench.engines`: the torch and onnxruntime engines side by side, in one run.

For each model (random weights, published with model.onnx exported and checked as `publish`
does, in a local store and in S3 behind the bench's latency proxy), both engines are measured
in fresh processes, interleaved so that drift in the machine's load falls on both alike:

- cold start: spawn to first 200 (bench.cold), local store and S3, with peak RSS and the files
  the process read (its modules and mapped libraries: what a cold image cache must fetch);
- warm p50 of raw-JPEG requests at one thread and at two (bench.engine_warm);
- the batch worker's images per second at one and two threads (bench.batch_worker);

plus each engine's installed packages (the image's pinned list, as installed here) and the
CPU's flags (int8/bf16 kernels depend on them; Lambda does not document its x86 CPU). Targets:
onnxruntime at most 0.3x torch's cold start (local store), 0.8x its warm p50, 0.4x its peak RSS.
Results go to bench/results/engines.json (another folder with --output-dir); tables are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.__main__ import RESULTS_DIR, machine
from bench.artifacts import S3_PREFIX, VERSION, artifact_objects, model_name_for, photo_jpeg, random_artifact
from bench.child import DEFAULT_HANDLER
from bench.harness import BUCKET, S3_LINK, child_env, moto_s3, run_child
from bench.latency_proxy import LatencyProxy
from bench.report import table
from bench.sizing import sizing_guide
from lambda_rehearsal.image_build import image_pins
from lambda_src.artifact import Manifest, version_file_key
from lambda_src.contract import ENV_MODEL_ENGINE, ENV_TORCH_NUM_THREADS, ModelEngine
from model_training.onnx_export import export_onnx

MODELS = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "resnet50")
TARGETS = {"cold_local": 0.3, "warm_p50_1_thread": 0.8, "peak_rss": 0.4}  # onnxruntime / torch
BATCH_IMAGES = 8
CPU_FLAGS_OF_INTEREST = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
)


def cpu_flags() -> list[str]:
    """Every flag the CPU reports (/proc/cpuinfo), sorted."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return sorted(line.split(":", 1)[1].split())
    return []


def installed_mb(engine: ModelEngine) -> dict[str, Any]:
    """The engine image's packages as installed in this environment (files in their RECORDs), MB."""
    sizes = {}
    for name in image_pins(engine):
        files = metadata.distribution(name).files or []
        sizes[name] = sum(
            path.stat().st_size for path in (Path(str(file.locate())) for file in files) if path.is_file()
        )
    largest = sorted(sizes, key=lambda name: -sizes[name])[:3]
    return {
        "mb": round(sum(sizes.values()) / 1e6, 1),
        "largest": {name: round(sizes[name] / 1e6, 1) for name in largest},
    }


def publish_with_onnx(architecture: str, local_root: Path, s3_client: Any) -> dict[str, Any]:
    """Publish a random-weight `architecture` with its checked ONNX export to both stores."""
    manifest, weights = random_artifact(architecture)
    exported = export_onnx(weights, manifest)
    manifest = Manifest.from_dict({**manifest.to_dict(), "onnx": vars(exported.export)})
    for root, prefix in ((None, S3_PREFIX), (local_root, "")):
        objects = artifact_objects(manifest, weights, prefix)
        for name, data in exported.files.items():
            objects[version_file_key(prefix, manifest.model_name, VERSION, name)] = data
        for key, data in objects.items():
            if root is None:
                s3_client.put_object(Bucket=BUCKET, Key=key, Body=data)
            else:
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                (root / key).write_bytes(data)
    return {
        "model_name": manifest.model_name,
        "weights_mb": round(len(weights) / 1e6, 1),
        "onnx_mb": round(sum(len(data) for data in exported.files.values()) / 1e6, 1),
        "onnx_max_logit_difference": exported.export.max_logit_difference,
        "export_and_check_s": round(exported.seconds, 1),
    }


class EngineBench:
    def __init__(self, workdir: Path, s3_endpoint: str, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.local_store = workdir / "store"
        self.s3_endpoint = s3_endpoint
        self.args = args
        self.photo = workdir / "photo.jpg"
        self.photo.write_bytes(photo_jpeg())

    def env(self, model_name: str, engine: ModelEngine, store: str, threads: int = 0) -> dict[str, str]:
        uri = str(self.local_store) if store == "local" else f"s3://{BUCKET}/{S3_PREFIX}"
        env = child_env(uri, model_name, self.s3_endpoint)
        env[ENV_MODEL_ENGINE] = engine.value
        env[ENV_TORCH_NUM_THREADS] = str(threads)
        return env

    def cold(self, model_name: str, engine: ModelEngine, store: str) -> dict[str, Any]:
        args = [DEFAULT_HANDLER, str(self.photo), str(BATCH_IMAGES)]
        result = run_child("bench.cold", args, self.env(model_name, engine, store), self.workdir)
        return {
            "seconds": result["first_response_at"] - result["spawned_at"],
            "peak_rss_mb": result["peak_rss_mb"],
            "files_touched": result["files_touched"],
            "init_phases_ms": result["init_phases_ms"],
        }

    def warm(self, model_name: str, engine: ModelEngine, threads: int) -> dict[str, Any]:
        args = [str(self.photo), str(self.args.iterations)]
        env = self.env(model_name, engine, "local", threads)
        return run_child("bench.engine_warm", args, env, self.workdir)["latency_ms"]

    def batch_worker(self, model_name: str, engine: ModelEngine) -> dict[str, Any]:
        settings = self.workdir / "batch-worker-settings.json"
        settings.write_text(
            json.dumps(
                {
                    "store": str(self.local_store),
                    "model_name": model_name,
                    "version": VERSION,
                    "photo_path": str(self.photo),
                    "images_per_batch": BATCH_IMAGES,
                    "throughput_seconds": self.args.throughput_seconds,
                    "threads": [1, 2],
                    "engine": engine.value,
                }
            )
        )
        env = self.env(model_name, engine, "local")
        return run_child("bench.batch_worker", [str(settings)], env, self.workdir)["threads"]

    def measure(self, model_name: str) -> dict[str, Any]:
        cold: dict[str, dict[str, list[dict]]] = {e.value: {"local": [], "s3": []} for e in ModelEngine}
        failures: dict[str, list[str]] = {e.value: [] for e in ModelEngine}
        for _ in range(self.args.cold_repeats):
            for engine in ModelEngine:
                for store in ("local", "s3"):
                    try:
                        cold[engine.value][store].append(self.cold(model_name, engine, store))
                    except RuntimeError as error:  # e.g. the S3 read outlasting its bound on a busy machine
                        if store == "local":
                            raise
                        failures[engine.value].append(str(error).splitlines()[-1][:300])
        engines: dict[str, Any] = {}
        for engine in ModelEngine:
            runs = cold[engine.value]
            fastest_local = min(runs["local"], key=lambda run: run["seconds"])
            s3_runs = [run["seconds"] for run in runs["s3"]]
            engines[engine.value] = {
                "cold_local_s": round(statistics.median(run["seconds"] for run in runs["local"]), 3),
                "cold_s3_s": round(statistics.median(s3_runs), 3) if s3_runs else None,
                "cold_s3_failures": failures[engine.value],
                "cold_runs_s": {store: [round(run["seconds"], 3) for run in runs[store]] for store in runs},
                "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs["local"] + runs["s3"]), 1),
                "files_touched": fastest_local["files_touched"],
                "init_phases_ms_of_fastest_local": fastest_local["init_phases_ms"],
            }
        for threads in (1, 2):
            for engine in ModelEngine:
                engines[engine.value][f"warm_{threads}_thread_ms"] = self.warm(model_name, engine, threads)
        for engine in ModelEngine:
            engines[engine.value]["batch_worker"] = self.batch_worker(model_name, engine)
        return engines


def ratios(engines: dict[str, Any]) -> dict[str, float | None]:
    torch_, onnx = engines[ModelEngine.TORCH.value], engines[ModelEngine.ONNXRUNTIME.value]
    return {
        "cold_local": round(onnx["cold_local_s"] / torch_["cold_local_s"], 3),
        "cold_s3": round(onnx["cold_s3_s"] / torch_["cold_s3_s"], 3)
        if onnx["cold_s3_s"] and torch_["cold_s3_s"]
        else None,
        "warm_p50_1_thread": round(onnx["warm_1_thread_ms"]["p50"] / torch_["warm_1_thread_ms"]["p50"], 3),
        "warm_p50_2_threads": round(onnx["warm_2_thread_ms"]["p50"] / torch_["warm_2_thread_ms"]["p50"], 3),
        "peak_rss": round(onnx["peak_rss_mb"] / torch_["peak_rss_mb"], 3),
    }


def sizing(engines: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The memory-sizing guide's rows for each engine, from its warm one- and two-thread p50s."""
    return {
        name: sizing_guide(
            figures["warm_1_thread_ms"]["p50"], figures["warm_2_thread_ms"]["p50"], figures["peak_rss_mb"]
        )
        for name, figures in engines.items()
    }


def sizing_table(models: dict[str, Any]) -> str:
    rows = []
    for name, result in models.items():
        for engine, guide in result["sizing"].items():
            for row in guide:
                rows.append(
                    [
                        name,
                        engine,
                        row["memory_mb"],
                        f"{row['vcpus']:g}",
                        f"{row['expected_p50_ms']:.0f}" + ("" if row["measured"] else " (extrapolated)"),
                        f"{row['cost_per_million_usd']:.2f}",
                    ]
                )
    return table(
        ["model", "engine", "memory MB", "vCPU", "expected warm p50 ms", "USD per 1M requests"], rows
    )


def targets(models: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "model": name,
            "what": what,
            "measured": result["ratios"][what],
            "target": target,
            "met": result["ratios"][what] <= target,
        }
        for name, result in models.items()
        for what, target in TARGETS.items()
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    flags = cpu_flags()
    info["cpu_flags"] = flags
    info["cpu_flags_of_interest"] = {flag: flag in flags for flag in CPU_FLAGS_OF_INTEREST}
    results: dict[str, Any] = {
        "command": "python -m bench.engines --models " + " ".join(args.models),
        "machine": info,
        "settings": {
            "models": list(args.models),
            "cold_repeats": args.cold_repeats,
            "iterations": args.iterations,
            "throughput_seconds": args.throughput_seconds,
            "batch_images": BATCH_IMAGES,
        },
        "s3_link": vars(S3_LINK),
        "installed": {
            engine.value: installed_mb(engine) | {"packages": len(image_pins(engine))}
            for engine in ModelEngine
        },
        "models": {},
    }
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp,
        moto_s3() as (s3, moto_address),
        LatencyProxy(moto_address, S3_LINK) as s3_with_latency,
    ):
        s3.create_bucket(Bucket=BUCKET)
        bench = EngineBench(Path(tmp), s3_with_latency.endpoint, args)
        for architecture in args.models:
            print(f"[bench.engines] {architecture}: export and publish", flush=True)
            published = publish_with_onnx(architecture, bench.local_store, s3)
            print(f"[bench.engines] {architecture}: both engines", flush=True)
            engines = bench.measure(model_name_for(architecture))
            results["models"][architecture] = {
                **published,
                "engines": engines,
                "ratios": ratios(engines),
                "sizing": sizing(engines),
            }
    results["targets"] = targets(results["models"])
    results["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    results["duration_s"] = round(time.perf_counter() - started, 1)
    return results


def report(results: dict[str, Any]) -> str:
    """The side-by-side tables (docs/benchmarks.md and docs/sizing.md hold them)."""
    rows = []
    for name, result in results["models"].items():
        torch_, onnx = (result["engines"][engine.value] for engine in ModelEngine)
        ratio = result["ratios"]
        rows.append(
            [
                name,
                f"{torch_['cold_local_s']:.2f} / {onnx['cold_local_s']:.2f} ({ratio['cold_local']:.2f}x)",
                _seconds_pair(torch_["cold_s3_s"], onnx["cold_s3_s"], ratio["cold_s3"]),
                f"{torch_['warm_1_thread_ms']['p50']:.1f} / {onnx['warm_1_thread_ms']['p50']:.1f} "
                f"({ratio['warm_p50_1_thread']:.2f}x)",
                f"{torch_['warm_2_thread_ms']['p50']:.1f} / {onnx['warm_2_thread_ms']['p50']:.1f} "
                f"({ratio['warm_p50_2_threads']:.2f}x)",
                f"{torch_['peak_rss_mb']:.0f} / {onnx['peak_rss_mb']:.0f} ({ratio['peak_rss']:.2f}x)",
                f"{torch_['files_touched']['mb']:.0f} / {onnx['files_touched']['mb']:.0f}",
                *(
                    f"{torch_['batch_worker'][threads]['images_per_s']:.1f} / "
                    f"{onnx['batch_worker'][threads]['images_per_s']:.1f}"
                    for threads in ("1", "2")
                ),
            ]
        )
    engines = table(
        [
            "model",
            "cold start, local store (s): torch / onnxruntime",
            "cold start, S3 (s)",
            "warm p50, 1 thread (ms)",
            "warm p50, 2 threads (ms)",
            "peak RSS (MiB)",
            "files read by first answer (MB)",
            "batch worker, 1 thread (images/s)",
            "batch worker, 2 threads (images/s)",
        ],
        rows,
    )
    installed = results["installed"]
    packages = table(
        ["engine", "packages", "installed here (MB)", "largest (MB)"],
        [
            [
                engine,
                size["packages"],
                f"{size['mb']:.0f}",
                ", ".join(f"{n} {mb:.0f}" for n, mb in size["largest"].items()),
            ]
            for engine, size in installed.items()
        ],
    )
    verdicts = table(
        ["model", "onnxruntime vs torch", "measured", "target", "met"],
        [
            [row["model"], row["what"], f"{row['measured']:.2f}x", f"{row['target']}x", row["met"]]
            for row in results["targets"]
        ],
    )
    return "\n\n".join([engines, packages, verdicts, sizing_table(results["models"])])


def _seconds_pair(torch_s: float | None, onnx_s: float | None, ratio: float | None) -> str:
    """ "torch / onnxruntime (ratio)", or what failed to start (see cold_s3_failures)."""
    shown = [f"{value:.2f}" if value is not None else "failed" for value in (torch_s, onnx_s)]
    return " / ".join(shown) + (f" ({ratio:.2f}x)" if ratio is not None else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold starts per engine and store")
    parser.add_argument("--iterations", type=int, default=20, help="timed warm requests per engine")
    parser.add_argument(
        "--throughput-seconds", type=float, default=2.0, help="batch worker, per thread count"
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--report", type=Path, help="print the tables of an engines.json and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report is not None:
        print(report(json.loads(args.report.read_text(encoding="utf-8"))))
        return
    results = run(args)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / "engines.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report(results))
    print(f"[bench.engines] wrote {path}")


if __name__ == "__main__":
    main()
