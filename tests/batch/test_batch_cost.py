"""The cost estimate: measured seconds per image, stretched to the function's vCPUs, at list prices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from endpoint_client.batch_cost import (
    BENCH_RESULTS,
    PRICE_PER_S3_GET_USD,
    BenchFiguresMissing,
    WorkerSpeed,
    estimate_cost,
    measured_speed,
)
from endpoint_client.pricing import MB_PER_VCPU, PRICE_PER_GB_SECOND_USD, expected_latency_ms
from lambda_src.contract import ModelEngine


def bench_model(one_ms: float, two_ms: float, *, batch_worker: bool, load_s: float = 2.0) -> dict[str, Any]:
    """One model's entry of bench/results/results.json, with the fields the estimate reads."""
    model: dict[str, Any] = {
        "warm": {
            "throughput": {
                "1": {"handler_single": {"p50_ms_per_call": one_ms * 3}},
                "2": {"handler_single": {"p50_ms_per_call": two_ms * 3}},
            }
        },
        "cold_start_s": {"handler_s3": {"median": load_s}},
    }
    if batch_worker:
        model["batch_worker"] = {
            "threads": {"1": {"ms_per_image": one_ms}, "2": {"ms_per_image": two_ms}},
        }
    return model


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    models = {
        "resnet18": bench_model(40.0, 24.0, batch_worker=True),
        "efficientnet_b0": bench_model(90.0, 50.0, batch_worker=False, load_s=3.0),
    }
    path.write_text(json.dumps({"models": models}))
    return path


def test_the_batch_workers_own_figures_are_used_when_the_bench_has_them(results: Path) -> None:
    speed = measured_speed("resnet18", results)

    assert (speed.one_thread_ms, speed.two_threads_ms, speed.model_load_s) == (40.0, 24.0, 2.0)
    assert "batch worker" in speed.source and "resnet18" in speed.source


def test_without_batch_worker_figures_the_single_image_handler_stands_in(results: Path) -> None:
    speed = measured_speed("efficientnet_b0", results)

    assert (speed.one_thread_ms, speed.two_threads_ms) == (270.0, 150.0)
    assert "single-image handler" in speed.source


def test_an_unmeasured_architecture_is_priced_as_the_slowest_measured_model(results: Path) -> None:
    speed = measured_speed("convnext_large", results)

    assert speed.one_thread_ms == 270.0
    assert "efficientnet_b0, the slowest measured (convnext_large was not)" in speed.source


def test_the_time_per_image_follows_the_functions_vcpus() -> None:
    speed = WorkerSpeed(one_thread_ms=40.0, two_threads_ms=24.0, model_load_s=2.0, source="test")

    assert speed.ms_per_image(1769) == pytest.approx(40.0)
    assert speed.ms_per_image(3008) == pytest.approx(expected_latency_ms(40.0, 24.0, 3008 / MB_PER_VCPU))
    assert speed.ms_per_image(10240) < speed.ms_per_image(3008)


def test_lambda_is_charged_for_every_image_and_each_environments_model_load() -> None:
    speed = WorkerSpeed(one_thread_ms=40.0, two_threads_ms=24.0, model_load_s=2.0, source="test")

    estimate = estimate_cost(100_000, memory_mb=3008, images_per_invocation=32, concurrency=50, speed=speed)

    seconds = 100_000 * speed.ms_per_image(3008) / 1000 + 50 * 2.0
    assert estimate.batches == 3125 and estimate.environments == 50
    assert estimate.lambda_gb_seconds == pytest.approx(seconds * 3008 / 1024)
    assert estimate.lambda_usd > estimate.lambda_gb_seconds * PRICE_PER_GB_SECOND_USD  # plus requests
    assert estimate.s3_usd >= 100_000 * PRICE_PER_S3_GET_USD
    assert estimate.step_functions_usd > 0
    assert estimate.total_usd == pytest.approx(
        estimate.lambda_usd + estimate.step_functions_usd + estimate.s3_usd
    )
    doubled = estimate_cost(200_000, memory_mb=3008, images_per_invocation=32, concurrency=50, speed=speed)
    assert doubled.total_usd == pytest.approx(2 * estimate.total_usd, rel=0.05)


def test_the_repositorys_bench_results_can_price_the_demo_model() -> None:
    speed = measured_speed("resnet18", BENCH_RESULTS)

    assert speed.one_thread_ms > speed.two_threads_ms > 0


def test_missing_bench_results_say_to_run_the_bench(tmp_path: Path) -> None:
    with pytest.raises(BenchFiguresMissing, match="make bench"):
        measured_speed("resnet18", tmp_path / "results.json")


def engines_model(torch_ms: tuple[float, float], onnx_ms: tuple[float, float]) -> dict[str, Any]:
    """One model's entry of bench/results/engines.json, with the fields the estimate reads."""

    def engine(one_ms: float, two_ms: float, load_s: float) -> dict[str, Any]:
        threads = {"1": {"ms_per_image": one_ms}, "2": {"ms_per_image": two_ms}}
        return {"batch_worker": threads, "cold_s3_s": load_s}

    return {"engines": {"torch": engine(*torch_ms, 2.5), "onnxruntime": engine(*onnx_ms, 0.6)}}


def test_each_engine_is_priced_with_its_own_side_by_side_figures(results: Path) -> None:
    # Given the engines' side-by-side figures for resnet18 beside the full run's results
    engines = results.with_name("engines.json")
    engines.write_text(json.dumps({"models": {"resnet18": engines_model((50.0, 30.0), (35.0, 20.0))}}))

    onnx = measured_speed("resnet18", results, engine=ModelEngine.ONNXRUNTIME)
    torch = measured_speed("resnet18", results)
    other = measured_speed("efficientnet_b0", results, engine=ModelEngine.ONNXRUNTIME)

    assert (onnx.one_thread_ms, onnx.two_threads_ms, onnx.model_load_s) == (35.0, 20.0, 0.6)
    assert "onnxruntime engine" in onnx.source and "engines.json" in onnx.source
    # the torch engine's figures measured at their thread count win over the full run's
    assert (torch.one_thread_ms, torch.two_threads_ms, torch.model_load_s) == (50.0, 30.0, 2.5)
    # a model the side-by-side run did not measure is priced as its slowest, and says so
    assert other.one_thread_ms == 35.0 and "the slowest measured (efficientnet_b0 was not)" in other.source


def test_the_onnxruntime_engine_needs_the_side_by_side_figures(results: Path) -> None:
    with pytest.raises(BenchFiguresMissing, match=r"python -m bench\.engines"):
        measured_speed("resnet18", results, engine=ModelEngine.ONNXRUNTIME)
