"""The committed side-by-side results of both engines (bench/results/engines.json, `python -m bench.engines`).

Nothing is timed here: the figures are those of the last full run. These tests check that the run
covered every model the engines' bench knows, in one run, that each verdict follows from its
figures, and that the misses are exactly the ones the benchmarks page explains.
"""

import json
from pathlib import Path

import pytest

from bench.engines import MODELS, TARGETS, ratios

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "engines.json"
# Targets a committed run misses, each explained on the benchmarks page (none in the last run).
KNOWN_MISSES: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def test_one_run_measured_every_model_on_both_engines(results: dict) -> None:
    assert set(results["models"]) == set(MODELS)
    assert results["machine"]["cpu_flags_of_interest"] is not None  # the CPU's flags are logged
    for name, result in results["models"].items():
        assert set(result["engines"]) == {"torch", "onnxruntime"}, name
        assert result["ratios"] == ratios(result["engines"]), name  # ratios from the same run's figures


def test_each_verdict_follows_from_its_figure_and_the_misses_are_the_explained_ones(results: dict) -> None:
    rows = results["targets"]
    assert {(row["model"], row["what"]) for row in rows} == {
        (model, what) for model in MODELS for what in TARGETS
    }
    for row in rows:
        assert row["target"] == TARGETS[row["what"]]
        assert row["measured"] == results["models"][row["model"]]["ratios"][row["what"]]
        assert row["met"] is (row["measured"] <= row["target"]), row
    missed = {(row["model"], row["what"]) for row in rows if not row["met"]}
    assert missed == KNOWN_MISSES, f"targets missed by the committed results: {missed}"
