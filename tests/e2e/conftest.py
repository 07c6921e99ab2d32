"""End-to-end fixtures: a real tiny model published to a real store, served by a separate process.

The model is trained once per session with the training package (tiny: 32 px,
one epoch), published with its publisher, and served by `python -m local_endpoint`
started as a subprocess on a free port of 127.0.0.1. Requests go over real HTTP,
mostly with `curl`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from lambda_src.preprocessing import eval_transform, to_rgb
from model_training.demo_data import write_examples
from model_training.publishing import publish
from model_training.training import TrainingConfig, TrainingResult, save_output, train
from tests.support.local_server import ServerProcess, serve_store

MODEL_NAME = "e2e-shapes"


def curl(*args: str) -> tuple[int, Any]:
    """Run curl against the server; (HTTP status, parsed JSON body)."""
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", *args],
        capture_output=True,
        check=True,
        timeout=60,
    )
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status), json.loads(body)


def top_labels(predictions: list[dict[str, Any]]) -> list[str]:
    return [prediction["label"] for prediction in predictions]


@pytest.fixture(scope="session")
def trained() -> TrainingResult:
    """A real resnet18 trained for one epoch on a small demo set at 32 px (a few seconds)."""
    config = TrainingConfig(
        model_name=MODEL_NAME, demo_images_per_class=24, epochs=1, image_size=32, batch_size=32, seed=0
    )
    return train(config, progress=False, note=lambda _: None)


@pytest.fixture(scope="session")
def training_output(tmp_path_factory: pytest.TempPathFactory, trained: TrainingResult) -> Path:
    """The folder a training run writes (model.pt and manifest.json), ready to publish."""
    return save_output(trained, tmp_path_factory.mktemp("training-output"))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, training_output: Path) -> Path:
    """A local model store holding one published version of the trained model."""
    store = tmp_path_factory.mktemp("model-store")
    publish(training_output, str(store), progress=False)
    return store


@pytest.fixture(scope="session")
def published_version(model_store: Path) -> str:
    return (model_store / MODEL_NAME / "LATEST").read_text().strip()


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Unseen demo images of every class, in each accepted format: {"jpeg": [...], ...}."""
    folder = tmp_path_factory.mktemp("examples")
    return {
        fmt: write_examples(folder / fmt, per_class=1, image_format=fmt) for fmt in ("jpeg", "png", "webp")
    }


@pytest.fixture(scope="session")
def expected(trained: TrainingResult):
    """What the trained model itself says about an image file: labels, most probable first."""
    transform = eval_transform(trained.manifest.preprocessing)
    labels = trained.manifest.labels

    def ranked(path: Path) -> list[tuple[str, float]]:
        with Image.open(path) as image:
            batch = transform(to_rgb(image)).unsqueeze(0)
        with torch.inference_mode():
            probabilities = torch.softmax(trained.model(batch), dim=1)[0]
        order = probabilities.argsort(descending=True).tolist()
        return [(labels[index], float(probabilities[index])) for index in order]

    return ranked


@pytest.fixture(scope="session")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m local_endpoint` serving the model store; stopped with Ctrl-C (SIGINT) at the end."""
    with serve_store(model_store, MODEL_NAME, tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running
