"""The committed benchmark results have every figure the README table is made from."""

import json
from pathlib import Path

from bench.report import markdown_report

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "results.json"
MODELS = {"resnet18", "mobilenet_v3_small", "efficientnet_b0"}  # the models the issue names


def test_committed_results_cover_every_model_and_render_as_tables():
    # Given the results of the last full `python -m bench`
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    # When the README tables are rendered from them
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
    assert results["targets"], "the targets of the issue are checked"
