"""`python -m bench`: benchmark the inference runtime and write bench/results/.

For each model: warm latency against the in-process floor, throughput at 1 and 2
threads, the reload-per-request peer pattern (one child process), the batch worker's
images per second at 1 and 2 threads (another child), then cold starts of
a serving process (local store, and S3: moto behind a proxy with a network's latency)
against a bare script and the floor (a fresh `import torch`, plus building, loading and
running the model once in process), interleaved, and init under AWS's runtime interface
client as the image runs it (bench.runtime_client). Results go to results.json and
latency.png; the tables are printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import PIL
import psutil
import torch
import torchvision
from moto.server import ThreadedMotoServer

from bench.artifacts import S3_PREFIX, VERSION, PublishedModel, large_photo_jpeg, photo_jpeg, publish
from bench.child import DEFAULT_HANDLER
from bench.latency_proxy import LatencyProxy, Link
from bench.report import markdown_report
from bench.runtime_client import measure_runtime_client
from bench.sizing import PRICE_PER_GB_SECOND_USD, PRICE_PER_MILLION_REQUESTS_USD, PRICES_AS_OF, sizing_guide
from bench.stats import summarise_s
from lambda_src.artifact import LATEST
from lambda_src.contract import ENV_MODEL_NAME, ENV_MODEL_STORE, ENV_MODEL_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# resnet50 and a timm model are what `model_training import` brings most often.
MODELS = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "resnet50", "timm:resnet18.a1_in1k")
BUCKET = "bench-models"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
WARM_TARGET = 1.0  # warm p50 vs the in-process floor, every model, raw and JSON bodies
# New process to first 200, vs the bare script: the ratio's name -> its target.
COLD_TARGETS = {"cold_local_vs_bare": 0.65, "cold_s3_vs_bare": 0.75}
RSS_MARGIN_MIB = 50  # serving's peak RSS may exceed the bare script's by this much
# S3 as a function sees it, assumed: first bytes tens of ms away (S3 Express One Zone advertises
# single-digit ms, "up to 10x faster than S3 Standard"), tens of MB/s on one connection.
S3_LINK = Link(one_way_delay_s=0.020, bytes_per_s=75e6)
CHILD_TIMEOUT_S = 600
QUIET_LOAD = 0.5  # 1-minute load average below which the machine counts as quiet
BATCH_WORKER_IMAGES = 32  # images per batch, the deployed default (context batch_images_per_invocation)


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    iterations: int
    peer_iterations: int
    cold_repeats: int
    throughput_seconds: float
    batch_size: int
    handler: str


@dataclass(frozen=True)
class Amounts:
    """How many samples a run takes."""

    iterations: int
    peer_iterations: int
    cold_repeats: int
    throughput_seconds: float


FULL = Amounts(iterations=40, peer_iterations=10, cold_repeats=3, throughput_seconds=3.0)
QUICK = Amounts(iterations=5, peer_iterations=2, cold_repeats=1, throughput_seconds=0.3)


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one small model, few samples")
    parser.add_argument("--models", nargs="+", choices=MODELS, help=f"default: all ({', '.join(MODELS)})")
    parser.add_argument("--output-dir", type=Path, help="default: bench/results (a temp folder with --quick)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch request (default 8)")
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="module:function (default %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="skip latency.png")
    args = parser.parse_args(argv)
    amounts = QUICK if args.quick else FULL
    models = tuple(args.models or (("mobilenet_v3_small",) if args.quick else MODELS))
    output_dir = args.output_dir or (
        Path(tempfile.gettempdir()) / "bench-quick" if args.quick else RESULTS_DIR
    )
    settings = Settings(models=models, batch_size=args.batch_size, handler=args.handler, **asdict(amounts))
    return settings, output_dir, not args.no_plot


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, cwd=REPO_ROOT
    )
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "git_commit": commit.stdout.strip(),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "niceness": os.nice(0),  # below 0 when run with `nice -n -10` to shield it from other work
    }


@contextmanager
def moto_s3():
    """A moto S3 server on 127.0.0.1 and a boto3 client for it; yields (client, (host, port))."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        yield client, (host, port)
    finally:
        server.stop()


def function_env(model_store: str, model_name: str, s3_endpoint: str) -> dict[str, str]:
    """The function's own settings: the model location as the stack sets it, S3 pointed at moto."""
    return {
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        ENV_MODEL_STORE: model_store,
        ENV_MODEL_NAME: model_name,
        ENV_MODEL_VERSION: LATEST,
    }


def child_env(model_store: str, model_name: str, s3_endpoint: str) -> dict[str, str]:
    """A measuring child's environment: this one's without AWS settings, dummy credentials, the function's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= DUMMY_CREDENTIALS
    env |= function_env(model_store, model_name, s3_endpoint)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


def run_child(module: str, args: list[str], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Run `python -m module args`; its result file as a dict, plus when it was spawned."""
    result_path = workdir / f"result-{time.monotonic_ns()}.json"
    stderr_path = workdir / "child-stderr.txt"
    with stderr_path.open("wb") as stderr:
        spawned_at = time.time()
        completed = subprocess.run(
            [sys.executable, "-m", module, *args, str(result_path)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,  # the handler's per-request logs; Lambda ships them off too
            stderr=stderr,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    if completed.returncode != 0 or not result_path.exists():
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{module} {' '.join(args)} failed ({completed.returncode}):\n{tail}")
    result = json.loads(result_path.read_text())
    result["spawned_at"] = spawned_at
    return result


class Bench:
    """One benchmark run: the published models, the photos and the places children read them from."""

    def __init__(self, settings: Settings, workdir: Path, s3_endpoint: str) -> None:
        self.settings = settings
        self.workdir = workdir
        self.local_store = workdir / "store"
        self.s3_endpoint = s3_endpoint
        self.photo_path = workdir / "photo.jpg"
        self.large_photo_path = workdir / "photo-12mp.jpg"
        self.photo_path.write_bytes(photo_jpeg())
        self.large_photo_path.write_bytes(large_photo_jpeg())

    def store_uri(self, store: str) -> str:
        return str(self.local_store) if store == "local" else f"s3://{BUCKET}/{S3_PREFIX}"

    def env(self, model: PublishedModel, store: str) -> dict[str, str]:
        return child_env(self.store_uri(store), model.model_name, self.s3_endpoint)

    def warm(self, model: PublishedModel) -> dict[str, Any]:
        settings_path = self.workdir / "warm-settings.json"
        settings_path.write_text(
            json.dumps(
                {
                    "handler": self.settings.handler,
                    "store": str(self.local_store),
                    "model_name": model.model_name,
                    "version": VERSION,
                    "photo_path": str(self.photo_path),
                    "large_photo_path": str(self.large_photo_path),
                    "iterations": self.settings.iterations,
                    "peer_iterations": self.settings.peer_iterations,
                    "throughput_seconds": self.settings.throughput_seconds,
                    "throughput_threads": [1, 2],
                    "batch_size": self.settings.batch_size,
                }
            )
        )
        return run_child("bench.warm", [str(settings_path)], self.env(model, "local"), self.workdir)

    def batch_worker(self, model: PublishedModel) -> dict[str, Any]:
        """The batch worker's images per second at one and two threads (what batch jobs are priced with)."""
        settings_path = self.workdir / "batch-worker-settings.json"
        settings_path.write_text(
            json.dumps(
                {
                    "store": str(self.local_store),
                    "model_name": model.model_name,
                    "version": VERSION,
                    "photo_path": str(self.photo_path),
                    "images_per_batch": BATCH_WORKER_IMAGES,
                    "throughput_seconds": self.settings.throughput_seconds,
                    "threads": [1, 2],
                }
            )
        )
        return run_child("bench.batch_worker", [str(settings_path)], self.env(model, "local"), self.workdir)

    def cold_import_torch(self, model: PublishedModel) -> dict[str, Any]:
        result = run_child("bench.import_torch", [], self.env(model, "local"), self.workdir)
        return {"seconds": result["imported_at"] - result["spawned_at"], "peak_rss_mb": result["peak_rss_mb"]}

    def cold_bare(self, model: PublishedModel) -> dict[str, Any]:
        args = [model.architecture, str(model.weights_path)]
        result = run_child("bench.bare_floor", args, self.env(model, "local"), self.workdir)
        return {
            "seconds": result["done_at"] - result["spawned_at"],
            "in_process_s": result["done_at"] - result["imported_at"],
            "peak_rss_mb": result["peak_rss_mb"],
        }

    def cold_serving(self, model: PublishedModel, store: str) -> dict[str, Any]:
        args = [self.settings.handler, str(self.photo_path), str(self.settings.batch_size)]
        result = run_child("bench.cold", args, self.env(model, store), self.workdir)
        return {
            "seconds": result["first_response_at"] - result["spawned_at"],
            "phases_s": {
                "interpreter_start": result["started_at"] - result["spawned_at"],
                "init": result["initialised_at"] - result["started_at"],
                "first_request": result["first_response_at"] - result["initialised_at"],
            },
            "peak_rss_mb": result["peak_rss_mb"],
            "imported": result["imported"],
            "init_phases_ms": result["init_phases_ms"],
        }

    def cold(self, model: PublishedModel) -> dict[str, Any]:
        """Cold starts of the floor, the bare script and serving from each store, interleaved."""
        runs: dict[str, list[dict]] = {
            "import_torch": [],
            "floor_bare": [],
            "handler_local": [],
            "handler_s3": [],
        }
        for _ in range(self.settings.cold_repeats):
            runs["import_torch"].append(self.cold_import_torch(model))
            runs["floor_bare"].append(self.cold_bare(model))
            runs["handler_local"].append(self.cold_serving(model, "local"))
            runs["handler_s3"].append(self.cold_serving(model, "s3"))
        summary: dict[str, Any] = {}
        for name, attempts in runs.items():
            summary[name] = summarise_s([attempt["seconds"] for attempt in attempts])
            summary[name]["peak_rss_mb"] = round(max(attempt["peak_rss_mb"] for attempt in attempts), 1)
            if "phases_s" in attempts[0]:
                fastest = min(attempts, key=lambda attempt: attempt["seconds"])
                summary[name]["phases_s_of_fastest"] = {
                    k: round(v, 3) for k, v in fastest["phases_s"].items()
                }
                summary[name]["imported"] = fastest["imported"]
                summary[name]["init_phases_ms_of_fastest"] = fastest["init_phases_ms"]
        summary["floor"] = floor(runs["import_torch"], runs["floor_bare"])
        return summary

    def runtime_client(self, model: PublishedModel) -> dict[str, Any]:
        """Init and first response under AWS's runtime interface client, from each store."""
        environments = {
            store: function_env(self.store_uri(store), model.model_name, self.s3_endpoint)
            for store in ("local", "s3")
        }
        return measure_runtime_client(
            self.workdir, environments, self.photo_path.read_bytes(), self.settings.cold_repeats
        )


def floor(import_runs: list[dict], bare_runs: list[dict]) -> dict[str, float]:
    """The least a cold start can take: a fresh `import torch`, then build, load and forward in process."""
    import_s = statistics.median(run["seconds"] for run in import_runs)
    in_process_s = statistics.median(run["in_process_s"] for run in bare_runs)
    return {
        "import_torch_s": round(import_s, 3),
        "build_load_forward_s": round(in_process_s, 3),
        "seconds": round(import_s + in_process_s, 3),
    }


def ratios(warm: dict[str, Any], cold: dict[str, Any]) -> dict[str, float]:
    latency = warm["latency_ms"]
    bare, floor_s = cold["floor_bare"]["median"], cold["floor"]["seconds"]
    serving_rss = max(cold["handler_local"]["peak_rss_mb"], cold["handler_s3"]["peak_rss_mb"])
    return {
        "warm_raw_p50_vs_floor": round(latency["handler_raw"]["p50"] / latency["floor"]["p50"], 3),
        "warm_json_p50_vs_floor": round(latency["handler_json"]["p50"] / latency["floor"]["p50"], 3),
        "warm_raw_p50_vs_served_network": round(
            latency["handler_raw"]["p50"] / latency["served_network"]["p50"], 3
        ),
        "warm_large_jpeg_p50_vs_floor": round(
            latency["handler_raw_large"]["p50"] / latency["floor_large"]["p50"], 3
        ),
        "peer_reload_p50_vs_handler": round(latency["peer_reload"]["p50"] / latency["handler_raw"]["p50"], 2),
        "cold_local_vs_bare": round(cold["handler_local"]["median"] / bare, 3),
        "cold_s3_vs_bare": round(cold["handler_s3"]["median"] / bare, 3),
        "cold_local_vs_floor": round(cold["handler_local"]["median"] / floor_s, 3),
        "cold_s3_vs_floor": round(cold["handler_s3"]["median"] / floor_s, 3),
        "peak_rss_over_bare_mib": round(serving_rss - cold["floor_bare"]["peak_rss_mb"], 1),
    }


def targets(models: dict[str, dict]) -> list[dict[str, Any]]:
    """Every target of the issue that this run can check, with the measured value."""
    rows = []

    def check(model: str, what: str, measured: float, target: float, unit: str = "x") -> None:
        rows.append(
            {
                "model": model,
                "what": what,
                "measured": measured,
                "target": target,
                "unit": unit,
                "met": measured <= target,
            }
        )

    for name, result in models.items():
        measured = result["ratios"]
        for kind in ("raw", "json"):
            check(
                name, f"warm p50, {kind} body, vs floor", measured[f"warm_{kind}_p50_vs_floor"], WARM_TARGET
            )
        for key, label in (("cold_local_vs_bare", "local store"), ("cold_s3_vs_bare", "S3 with latency")):
            check(name, f"cold start ({label}) vs bare script", measured[key], COLD_TARGETS[key])
        check(
            name, "peak RSS over the bare script", measured["peak_rss_over_bare_mib"], RSS_MARGIN_MIB, " MiB"
        )
    return rows


def sizing(warm: dict[str, Any], peak_rss_mb: float) -> list[dict[str, Any]]:
    per_thread = warm["throughput"]
    return sizing_guide(
        per_thread["1"]["handler_single"]["p50_ms_per_call"],
        per_thread["2"]["handler_single"]["p50_ms_per_call"],
        peak_rss_mb,
    )


def prime_page_cache(bench: Bench, model: PublishedModel) -> None:
    """One discarded bare start, so every measured start finds torch's libraries in the page cache."""
    bench.cold_bare(model)


@contextmanager
def published_models(settings: Settings) -> Iterator[tuple[Bench, dict[str, PublishedModel]]]:
    """A Bench whose stores (a local folder; moto behind the latency proxy) hold every model, by name."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        moto_s3() as (s3, moto_address),
        LatencyProxy(moto_address, S3_LINK) as s3_with_latency,
    ):
        # Run as root, the runtime client runs as `nobody` (as the image does): it must read the store.
        Path(tmp).chmod(0o755)
        s3.create_bucket(Bucket=BUCKET)  # publishing goes straight to moto; serving through the proxy
        bench = Bench(settings, Path(tmp), s3_with_latency.endpoint)
        yield bench, {name: publish(name, bench.local_store, s3, BUCKET) for name in settings.models}


def run(settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {
        "command": "python -m bench" + (" --quick" if settings.iterations == QUICK.iterations else ""),
        "machine": machine(),
        "settings": settings.__dict__ | {"models": list(settings.models)},
        "prices": {
            "per_gb_second_usd": PRICE_PER_GB_SECOND_USD,
            "per_million_requests_usd": PRICE_PER_MILLION_REQUESTS_USD,
            "as_of": PRICES_AS_OF,
        },
        "s3_link": asdict(S3_LINK),
        "models": {},
    }
    started = time.perf_counter()
    with published_models(settings) as (bench, published):
        prime_page_cache(bench, published[settings.models[0]])
        for name, model in published.items():
            print(f"[bench] {name}: warm latency, throughput, reload per request", flush=True)
            warm = bench.warm(model)
            print(f"[bench] {name}: batch worker throughput", flush=True)
            batch_worker = bench.batch_worker(model)
            print(f"[bench] {name}: cold starts x{settings.cold_repeats}", flush=True)
            cold = bench.cold(model)
            print(
                f"[bench] {name}: init under the runtime interface client x{settings.cold_repeats}",
                flush=True,
            )
            runtime_client = bench.runtime_client(model)
            results["models"][name] = {
                "weights_mb": round(model.weights_size_bytes / 2**20, 1),
                "warm": warm,
                "batch_worker": batch_worker,
                "cold_start_s": cold,
                "runtime_client_init": runtime_client,
                "ratios": ratios(warm, cold),
                "sizing": sizing(warm, cold["handler_s3"]["peak_rss_mb"]),
            }
    results["targets"] = targets(results["models"])
    results["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    results["duration_s"] = round(time.perf_counter() - started, 1)
    return results


def warn_if_busy() -> None:
    """Other work on the cores skews everything, two-thread figures most (threads wait for each other)."""
    load = os.getloadavg()[0]
    if load > QUIET_LOAD:
        print(f"[bench] warning: load average is {load:.2f}; figures will be noisy", flush=True)


def main(argv: list[str] | None = None) -> None:
    settings, output_dir, plot = parse_args(argv)
    warn_if_busy()
    results = run(settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if plot:
        from bench.plot import plot_results

        plot_results(results, output_dir / "latency.png")
    print(markdown_report(results))
    print(f"[bench] wrote {output_dir}/results.json" + (" and latency.png" if plot else ""))


if __name__ == "__main__":
    main()
