"""The engines' side-by-side bench (bench/engines.py): ratios, verdicts, sizing and tables from figures.

Nothing is timed here: the figures are made up to known values. The measurements themselves are
bench.cold, bench.engine_warm and bench.batch_worker (tests/batch/test_bench_batch_worker.py runs
the batch worker's for real, at each thread count).
"""

from __future__ import annotations

from typing import Any

from bench.engines import TARGETS, cpu_flags, ratios, report, sizing, targets


def engine(cold_s: float, warm_ms: float, rss_mb: float, *, s3_s: float | None = None) -> dict[str, Any]:
    return {
        "cold_local_s": cold_s,
        "cold_s3_s": s3_s,
        "cold_s3_failures": [] if s3_s is not None else ["handler answered 503: store_unreadable"],
        "peak_rss_mb": rss_mb,
        "warm_1_thread_ms": {"p50": warm_ms},
        "warm_2_thread_ms": {"p50": warm_ms * 0.6},
        "files_touched": {"files": 100, "mb": 25.0},
        "batch_worker": {
            threads: {"images_per_s": 1000 / warm_ms * int(threads), "engine_threads": int(threads)}
            for threads in ("1", "2")
        },
    }


def results() -> dict[str, Any]:
    models = {
        "resnet18": {
            "torch": engine(2.0, 40.0, 700.0, s3_s=2.5),
            "onnxruntime": engine(0.5, 30.0, 200.0, s3_s=0.8),
        },
        "resnet50": {"torch": engine(2.5, 100.0, 900.0), "onnxruntime": engine(0.9, 90.0, 400.0, s3_s=1.0)},
    }
    entries = {
        name: {"engines": engines, "ratios": ratios(engines), "sizing": sizing(engines)}
        for name, engines in models.items()
    }
    return {
        "models": entries,
        "targets": targets(entries),
        "installed": {
            "torch": {"packages": 29, "mb": 700.0, "largest": {"torch": 500.0}},
            "onnxruntime": {"packages": 9, "mb": 160.0, "largest": {"onnxruntime": 60.0}},
        },
    }


def test_ratios_put_onnxruntime_over_torch_and_a_failed_s3_start_has_no_ratio() -> None:
    measured = results()["models"]
    assert measured["resnet18"]["ratios"] == {
        "cold_local": 0.25,
        "cold_s3": 0.32,
        "warm_p50_1_thread": 0.75,
        "warm_p50_2_threads": 0.75,
        "peak_rss": 0.286,
    }
    assert measured["resnet50"]["ratios"]["cold_s3"] is None


def test_every_model_is_held_to_every_target_and_a_miss_is_reported() -> None:
    rows = {(row["model"], row["what"]): row for row in results()["targets"]}
    assert set(rows) == {(model, what) for model in ("resnet18", "resnet50") for what in TARGETS}
    assert all(row["met"] for (model, _), row in rows.items() if model == "resnet18")
    # resnet50: 0.36x cold (target 0.3x), 0.9x warm (0.8x), 0.44x memory (0.4x): three misses
    assert [what for (model, what), row in rows.items() if model == "resnet50" and not row["met"]] == list(
        TARGETS
    )


def test_the_sizing_guide_covers_both_engines_and_the_tables_render() -> None:
    measured = results()
    guide = measured["models"]["resnet18"]["sizing"]
    assert set(guide) == {"torch", "onnxruntime"}
    assert [row["memory_mb"] for row in guide["onnxruntime"]] == [1769, 3008, 5307]
    assert guide["onnxruntime"][0]["expected_p50_ms"] == 30.0  # 1 vCPU: the one-thread p50
    tables = report(measured)
    assert "| resnet18 | 2.00 / 0.50 (0.25x) | 2.50 / 0.80 (0.32x) |" in tables
    assert "failed / 1.00" in tables  # the S3 start that never answered is said, not hidden
    assert "| resnet50 | onnxruntime | 1769 | 1 | 90 |" in tables
    assert "| onnxruntime | 9 | 160 |" in tables


def test_the_cpu_flags_are_read_from_the_machine() -> None:
    flags = cpu_flags()
    assert flags == sorted(flags) and flags  # x86 "flags" or arm "Features"
