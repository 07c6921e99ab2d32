"""The committed benchmark results: complete, consistent with their own measurements, and meeting the targets.

Nothing is timed here: the figures are those of the last full `python -m bench` run; these
tests check that its ratios and target verdicts follow from its measurements, that every
target the issue set is among them and met, and that the README tables render from them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import COLD_TARGET, WARM_TARGETS, ratios, targets
from bench.report import main, markdown_report

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "results.json"
MODELS = {"resnet18", "mobilenet_v3_small", "efficientnet_b0"}  # the models the issue names


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def test_committed_results_cover_every_model_and_render_as_tables(results: dict) -> None:
    # When the README tables are rendered from the results of the last full `python -m bench`
    report = markdown_report(results)
    # Then every model has each measurement and appears in every table
    assert set(results["models"]) == MODELS
    for name, result in results["models"].items():
        assert {"floor", "handler_raw", "handler_json", "served_network", "peer_reload"} <= set(
            result["warm"]["latency_ms"]
        )
        assert {"floor_bare", "handler_local", "handler_s3"} <= set(result["cold_start_s"])
        assert set(result["warm"]["throughput"]) == {"1", "2"}
        assert [row["memory_mb"] for row in result["sizing"]] == [1769, 3008, 5307]
        assert report.count(f"| {name} |") >= 5


def test_the_recorded_ratios_follow_from_the_recorded_measurements(results: dict) -> None:
    for name, result in results["models"].items():
        assert result["ratios"] == ratios(result["warm"], result["cold_start_s"]), name


def test_every_target_is_recorded_with_its_verdict_and_met(results: dict) -> None:
    recorded = results["targets"]
    # The verdicts are the bench's own, recomputed from the recorded ratios
    assert recorded == targets(results["models"])
    # every target the issue set is there: warm latency for two models, cold start for all
    checked = {(row["model"], row["what"]) for row in recorded}
    for name in WARM_TARGETS:
        assert {(name, "warm p50, raw body, vs floor"), (name, "warm p50, json body, vs floor")} <= checked
    assert {(name, "cold start (local store) vs bare script") for name in MODELS} <= checked
    assert {row["target"] for row in recorded if row["what"].startswith("cold")} == {COLD_TARGET}
    # and the run met each of them
    missed = [row for row in recorded if not row["ratio"] <= row["target"]]
    assert not missed, f"targets not met by the committed results: {missed}"


def test_the_report_command_has_help_and_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "bench.report", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: python -m bench.report")
    main([str(RESULTS)])
    assert "**Targets**" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main([str(RESULTS.with_name("missing.json"))])
    assert refused.value.code == 2
    assert "cannot read" in capsys.readouterr().err
