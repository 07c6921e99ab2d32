"""What a batch job will cost, before it starts: Lambda, Step Functions and S3 requests.

The time per image comes from the figures the benchmark writes: the batch worker's measured
milliseconds per image at one and two threads, stretched to the batch function's vCPUs with the
Amdahl fit of pricing.py (the memory-sizing guide's too). Every environment the job starts also
loads the model once (the benchmark's cold start from S3). The engines' side-by-side run
(bench/results/engines.json, `python -m bench.engines`) has both engines' figures, each measured
at the thread count it names; the full run (results.json) has the torch engine's for more
models. The first that measured the model and engine is used. Only the figures files are read
here, never the bench's code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from endpoint_client.pricing import (
    PRICE_PER_GB_SECOND_USD,
    PRICE_PER_MILLION_REQUESTS_USD,
    PRICES_AS_OF,
    expected_latency_ms,
    vcpus_of,
)
from lambda_src.contract import ModelEngine

# The figures files `python -m bench` writes (its results.json), in this repository.
BENCH_RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "results.json"
# ... and the one `python -m bench.engines` writes: both engines, side by side
ENGINE_RESULTS = BENCH_RESULTS.with_name("engines.json")

# Step Functions and S3 list prices in us-east-1, as published in 2025; not looked up live.
STEP_FUNCTIONS_PRICES_AS_OF = (
    "Step Functions and S3 us-east-1 list prices as published in 2025 (not looked up live)"
)
PRICE_PER_STATE_TRANSITION_USD = 0.025 / 1000  # Standard workflows
PRICE_PER_EXPRESS_REQUEST_USD = 1.00 / 1_000_000  # each Distributed Map child execution (Express)
PRICE_PER_EXPRESS_GB_SECOND_USD = 0.00001667  # Express duration, billed in 64 MB steps
EXPRESS_BILLED_GB = 64 / 1024  # a child execution that only invokes a function stays in the first step
PRICE_PER_S3_GET_USD = 0.0004 / 1000
PRICE_PER_S3_LIST_USD = 0.005 / 1000  # one ListObjectsV2 call returns up to 1,000 keys
# The job's own states (NameResults, ResolveModelVersion, CheckConcurrency, ChooseItemSource, the
# map, its end); the Distributed Map adds one transition per child execution it starts.
JOB_STATE_TRANSITIONS = 6


class BenchFiguresMissing(Exception):
    """The benchmark results have no figures to estimate from."""


@dataclass(frozen=True)
class WorkerSpeed:
    """Measured milliseconds per image at one and two threads, the model load, and their source."""

    one_thread_ms: float
    two_threads_ms: float
    model_load_s: float
    source: str

    def ms_per_image(self, memory_mb: int) -> float:
        return expected_latency_ms(self.one_thread_ms, self.two_threads_ms, vcpus_of(memory_mb))


def measured_speed(
    architecture: str,
    results_path: Path = BENCH_RESULTS,
    *,
    engine: ModelEngine = ModelEngine.TORCH,
    engines_path: Path | None = None,
) -> WorkerSpeed:
    """The bench's figures for `architecture` served by `engine`, else its slowest model's (said in `source`).

    `engines_path` defaults to the engines.json beside `results_path`.
    """
    engines_path = engines_path if engines_path is not None else results_path.with_name(ENGINE_RESULTS.name)
    side_by_side = _engine_models(engines_path)
    if architecture in side_by_side or engine is not ModelEngine.TORCH:
        return _engine_speed(architecture, engine, side_by_side, engines_path)
    try:
        models: dict[str, Any] = json.loads(results_path.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError) as error:
        raise BenchFiguresMissing(
            f"no benchmark results in {results_path} ({error}): run make bench"
        ) from None
    if not models:
        raise BenchFiguresMissing(f"{results_path} holds no model: run make bench")
    name = (
        architecture
        if architecture in models
        else max(models, key=lambda model: _one_thread_ms(models[model]))
    )
    model = models[name]
    kind = "batch worker" if "batch_worker" in model else "single-image handler (no batch worker figures yet)"
    measured = name if name == architecture else f"{name}, the slowest measured ({architecture} was not)"
    return WorkerSpeed(
        one_thread_ms=_one_thread_ms(model),
        two_threads_ms=_ms_per_image(model, "2"),
        model_load_s=model["cold_start_s"]["handler_s3"]["median"],
        source=f"bench {kind}, {measured}, measured {results_path.name}",
    )


def _engine_models(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["models"])
    except (OSError, ValueError, KeyError):
        return {}


def _engine_speed(architecture: str, engine: ModelEngine, models: dict[str, Any], path: Path) -> WorkerSpeed:
    """Figures of the engines' side-by-side run: the batch worker of `engine`, its cold start from S3."""
    if not models:
        raise BenchFiguresMissing(f"no {engine} figures in {path}: run python -m bench.engines")

    def worker(name: str, threads: str) -> float:
        return float(models[name]["engines"][engine.value]["batch_worker"][threads]["ms_per_image"])

    name = architecture if architecture in models else max(models, key=lambda model: worker(model, "1"))
    measured = name if name == architecture else f"{name}, the slowest measured ({architecture} was not)"
    return WorkerSpeed(
        one_thread_ms=worker(name, "1"),
        two_threads_ms=worker(name, "2"),
        model_load_s=float(models[name]["engines"][engine.value]["cold_s3_s"]),
        source=f"bench batch worker, {engine} engine, {measured}, measured {path.name}",
    )


def _one_thread_ms(model: dict[str, Any]) -> float:
    return _ms_per_image(model, "1")


def _ms_per_image(model: dict[str, Any], threads: str) -> float:
    if "batch_worker" in model:
        return float(model["batch_worker"]["threads"][threads]["ms_per_image"])
    return float(model["warm"]["throughput"][threads]["handler_single"]["p50_ms_per_call"])


@dataclass(frozen=True)
class CostEstimate:
    """A job's expected charges in USD, with the figures they come from."""

    images: int
    batches: int
    environments: int
    memory_mb: int
    ms_per_image: float
    lambda_gb_seconds: float
    lambda_usd: float
    step_functions_usd: float
    s3_usd: float
    speed_source: str

    @property
    def total_usd(self) -> float:
        return self.lambda_usd + self.step_functions_usd + self.s3_usd

    def lines(self) -> list[str]:
        """The estimate as a person reads it before saying yes."""
        return [
            f"  {self.images:,} images in {self.batches:,} batches, up to {self.environments:,} "
            f"function environments (each loads the model once)",
            f"  {self.ms_per_image:.1f} ms per image at {self.memory_mb} MB ({self.speed_source})",
            f"  Lambda:         ${self.lambda_usd:,.4f}  ({self.lambda_gb_seconds:,.0f} GB-s and requests)",
            f"  Step Functions: ${self.step_functions_usd:,.4f}  (transitions, Express child executions)",
            f"  S3 requests:    ${self.s3_usd:,.4f}  (one GET per image, the listing)",
            f"  Total:          ${self.total_usd:,.4f}  estimated",
            f"  ({PRICES_AS_OF}; {STEP_FUNCTIONS_PRICES_AS_OF})",
        ]


def estimate_cost(
    images: int, *, memory_mb: int, images_per_invocation: int, concurrency: int, speed: WorkerSpeed
) -> CostEstimate:
    """The charges of classifying `images` images with the deployed batch function."""
    batches = math.ceil(images / images_per_invocation)
    environments = min(concurrency, batches)
    ms_per_image = speed.ms_per_image(memory_mb)
    seconds = images * ms_per_image / 1000 + environments * speed.model_load_s
    gb_seconds = seconds * memory_mb / 1024
    lambda_usd = gb_seconds * PRICE_PER_GB_SECOND_USD + batches * PRICE_PER_MILLION_REQUESTS_USD / 1_000_000
    step_functions_usd = (
        (JOB_STATE_TRANSITIONS + batches) * PRICE_PER_STATE_TRANSITION_USD
        + batches * PRICE_PER_EXPRESS_REQUEST_USD
        + seconds * EXPRESS_BILLED_GB * PRICE_PER_EXPRESS_GB_SECOND_USD
    )
    s3_usd = images * PRICE_PER_S3_GET_USD + math.ceil(images / 1000) * PRICE_PER_S3_LIST_USD
    return CostEstimate(
        images=images,
        batches=batches,
        environments=environments,
        memory_mb=memory_mb,
        ms_per_image=ms_per_image,
        lambda_gb_seconds=gb_seconds,
        lambda_usd=lambda_usd,
        step_functions_usd=step_functions_usd,
        s3_usd=s3_usd,
        speed_source=speed.source,
    )
