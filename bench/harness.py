"""The bench's set-up: settings, the published models, their stores, and the measuring children.

`Bench` runs each measurement in a new child process (`python -m bench.<part>`), with the
function's environment: a model in a local store and in moto's S3 behind a latency proxy.
`python -m bench` (bench/__main__.py) and `python -m bench.runtime_client` both start here.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from bench.artifacts import S3_PREFIX, VERSION, PublishedModel, large_photo_jpeg, photo_jpeg, publish
from bench.child import DEFAULT_HANDLER
from bench.latency_proxy import LatencyProxy, Link
from bench.stats import summarise_s
from lambda_src.artifact import LATEST, s3_store_uri
from lambda_src.contract import ENV_MODEL_NAME, ENV_MODEL_STORE, ENV_MODEL_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
# resnet50 and a timm model are what `model_training import` brings most often.
MODELS = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "resnet50", "timm:resnet18.a1_in1k")
BUCKET = "bench-models"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# S3 as a function sees it, assumed: first bytes tens of ms away (S3 Express One Zone advertises
# single-digit ms, "up to 10x faster than S3 Standard"), tens of MB/s on one connection.
S3_LINK = Link(one_way_delay_s=0.020, bytes_per_s=75e6)
CHILD_TIMEOUT_S = 600
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


def settings_for(
    models: tuple[str, ...], amounts: Amounts = FULL, *, batch_size: int = 8, handler: str = DEFAULT_HANDLER
) -> Settings:
    """A run's settings: these models, this many samples, batch requests of `batch_size` images."""
    return Settings(
        models=models,
        iterations=amounts.iterations,
        peer_iterations=amounts.peer_iterations,
        cold_repeats=amounts.cold_repeats,
        throughput_seconds=amounts.throughput_seconds,
        batch_size=batch_size,
        handler=handler,
    )


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
        return str(self.local_store) if store == "local" else s3_store_uri(BUCKET, S3_PREFIX)

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


def floor(import_runs: list[dict], bare_runs: list[dict]) -> dict[str, float]:
    """The least a cold start can take: a fresh `import torch`, then build, load and forward in process."""
    import_s = statistics.median(run["seconds"] for run in import_runs)
    in_process_s = statistics.median(run["in_process_s"] for run in bare_runs)
    return {
        "import_torch_s": round(import_s, 3),
        "build_load_forward_s": round(in_process_s, 3),
        "seconds": round(import_s + in_process_s, 3),
    }


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
