"""The bench's batch worker measurement, run in-process on the tiny model for a moment."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from bench.artifacts import photo_jpeg
from bench.batch_worker import throughput
from bench.report import markdown_report

from .conftest import MODEL_NAME, VERSION

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "results.json"


def test_the_batch_worker_is_measured_at_one_and_two_threads(model_store: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_jpeg())
    settings = {
        "store": str(model_store),
        "model_name": MODEL_NAME,
        "version": VERSION,
        "photo_path": str(photo),
        "images_per_batch": 4,
        "throughput_seconds": 0.05,
        "threads": [1, 2],
    }

    measured = throughput(settings)

    assert measured["images_per_batch"] == 4
    assert set(measured["threads"]) == {"1", "2"}
    for threads, figures in measured["threads"].items():
        assert figures["images_per_s"] > 0
        assert abs(figures["ms_per_image"] * figures["images_per_s"] - 1000) < 20  # the same measurement
        # each figure was measured at its thread count (loading the model used to reset it to all CPUs)
        assert figures["engine_threads"] == int(threads)
    assert measured["engine"] == "torch"


def test_the_report_shows_the_batch_worker_once_every_model_has_it() -> None:
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    with_worker = copy.deepcopy(results)
    for number, model in enumerate(with_worker["models"].values(), start=1):
        model["batch_worker"] = {
            "threads": {
                "1": {"images_per_s": 10.0 * number, "ms_per_image": 100.0 / number},
                "2": {"images_per_s": 20.0 * number, "ms_per_image": 50.0 / number},
            }
        }

    assert "Batch worker" in markdown_report(with_worker)
    assert "| resnet18 | 10.0 (100.0 ms) | 20.0 (50.0 ms) |" in markdown_report(with_worker)
    assert ("Batch worker" in markdown_report(results)) == all(
        "batch_worker" in model for model in results["models"].values()
    )
