"""The committed benchmark results: complete, their target verdicts true to their figures, the misses known.

Nothing is timed here: the figures are those of the last full `python -m bench` run; these
tests check that each target's verdict follows from its recorded figure, that every one is
met, and that the report's tables render from them (tests/docs checks the benchmark pages hold them).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import main, markdown_report

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "results.json"
# The models `python -m bench` measures (bench/__main__.py, which imports torch: not here).
MODELS = {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "resnet50", "timm:resnet18.a1_in1k"}


# Targets the committed run misses, each explained on the benchmarks page (docs/benchmarks.md). A miss
# that goes away (or a new one) fails the test, so this list stays true to the results.
KNOWN_MISSES = {
    # 100 MB of weights through the bench's S3 (moto reads the whole object for every ranged GET)
    ("resnet50", "cold start (S3 with latency) vs bare script"),
    # within 0.05 of their limits on the machine of the 2026-12-05 runs (the page says what moved)
    ("resnet18", "cold start (S3 with latency) vs bare script"),
    ("timm:resnet18.a1_in1k", "cold start (S3 with latency) vs bare script"),
}


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def test_committed_results_cover_every_model_and_render_as_tables(results: dict) -> None:
    # When the report's tables are rendered from the results of the last full `python -m bench`
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


def test_every_recorded_target_has_a_verdict_that_follows_from_its_figures_and_is_met(results: dict) -> None:
    recorded = results["targets"]
    # Every model was held to targets, its cold start among them
    assert {row["model"] for row in recorded} == MODELS
    assert {row["model"] for row in recorded if row["what"].startswith("cold start")} == MODELS
    for row in recorded:
        # (results before the bench named the figure `measured` called it `ratio`)
        figure = row["measured"] if "measured" in row else row["ratio"]
        assert row["met"] is (figure <= row["target"]), row
    # and the run met each of them but the misses the benchmarks page explains
    missed = {(row["model"], row["what"]) for row in recorded if not row["met"]}
    assert missed == KNOWN_MISSES, f"targets missed by the committed results: {missed}"


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
