"""Fine-tuned checkpoints with their own heads and inputs, imported unchanged and served over HTTP.

Each model is built as a tutorial builds it (a Sequential Dropout+Linear head on resnet18,
a head with activations, a 1-channel stem), its last Linear fitted to the test photos so
the top-1 is as clear as a trained model's, saved the way a training tool saves it, then
imported with the command line, published, served by `python -m local_endpoint` and asked
with curl. Its answer must be the user's own evaluation code's: the same model, plain
torchvision transforms on the fully decoded photo, top-5 scores within 2e-3.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms as transforms

from lambda_src.artifact import SCHEMA_VERSION, Manifest
from model_training.cli import main
from tests.support.imported_models import Transform, fit_head, full_decode, photos, picture_classes
from tests.support.local_server import serve_store

from .conftest import curl

LABELS = ("cat", "dog", "fox", "owl")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _eval_transform(mean: tuple[float, ...], std: tuple[float, ...], greyscale: bool = False) -> Transform:
    """What a fine-tuning tutorial evaluates with: Resize(256), CenterCrop(224), ToTensor, Normalize."""
    steps = [transforms.Grayscale()] if greyscale else []
    steps += [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ]
    return transforms.Compose(steps)


@dataclass(frozen=True)
class Case:
    model_name: str
    model: torch.nn.Module
    transform: Transform
    manifest: Manifest


def _import(root: Path, store: Path, name: str, weights: Path, *options: str) -> Manifest:
    (root / "labels.json").write_text(json.dumps({str(i): label for i, label in enumerate(LABELS)}))
    argv = [
        "import", "--weights", str(weights), "--labels", str(root / "labels.json"), "--model-name", name,
        "--publish-to", str(store), "--no-progress", *options,
    ]  # fmt: skip
    assert main(argv) == 0
    return Manifest.from_json((store / name / "v1" / "manifest.json").read_bytes())


def _dropout_linear_head(root: Path, store: Path) -> Case:
    """The tutorial's `model.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, n))` (reference scripts)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(512, len(LABELS)))
    transform = _eval_transform(*IMAGENET)
    fit_head(model, transform)
    args = argparse.Namespace(model="resnet18", lr=0.01, epochs=10, data_path="/data/pets", output_dir="runs")
    torch.save({"model": model.state_dict(), "epoch": 9, "args": args}, root / "model_9.pth")
    manifest = _import(root, store, "dropout-head", root / "model_9.pth", "--architecture", "resnet18")
    return Case("dropout-head", model.eval(), transform, manifest)


def _activation_head(root: Path, store: Path) -> Case:
    """A head with activations, inside a Lightning checkpoint: needs --head."""
    torch.manual_seed(1)
    model = torchvision.models.mobilenet_v3_small()
    model.classifier[3] = torch.nn.Sequential(
        torch.nn.Linear(1024, 256), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(256, len(LABELS))
    )
    transform = _eval_transform(*IMAGENET)
    fit_head(model, transform)
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save(
        {"epoch": 3, "global_step": 40, "state_dict": state, "hyper_parameters": {"lr": 0.01}},
        root / "last.ckpt",
    )
    manifest = _import(
        root, store, "activation-head", root / "last.ckpt",
        "--architecture", "mobilenet_v3_small", "--head", "linear-relu-dropout-linear",
    )  # fmt: skip
    return Case("activation-head", model.eval(), transform, manifest)


def _greyscale(root: Path, store: Path) -> Case:
    """A 1-channel resnet18 (the grayscale tutorials' conv1), normalised with one mean and std."""
    torch.manual_seed(2)
    model = torchvision.models.resnet18(num_classes=len(LABELS))
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    transform = _eval_transform((0.5,), (0.25,), greyscale=True)
    fit_head(model, transform)
    torch.save(model.state_dict(), root / "xray.pt")
    manifest = _import(
        root,
        store,
        "greyscale",
        root / "xray.pt",
        "--architecture",
        "resnet18",
        "--mean",
        "0.5",
        "--std",
        "0.25",
    )
    return Case("greyscale", model.eval(), transform, manifest)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Case]]]:
    root = tmp_path_factory.mktemp("checkpoints")
    store = root / "store"
    yield (
        store,
        {
            case.model_name: case
            for case in (make(root, store) for make in (_dropout_linear_head, _activation_head, _greyscale))
        },
    )


def test_the_manifests_record_the_heads_and_the_input(cases: tuple[Path, dict[str, Case]]) -> None:
    _, by_name = cases
    dropout, activation, greyscale = (
        by_name[name].manifest for name in ("dropout-head", "activation-head", "greyscale")
    )
    assert dropout.schema_version == SCHEMA_VERSION == 4
    assert dropout.head is not None and dropout.head.describe() == "fc = dropout-linear(512->4)"
    assert activation.head is not None
    assert activation.head.describe() == "classifier.3 = linear(1024->256)-relu-dropout-linear(256->4)"
    assert greyscale.head is None and greyscale.input_conv == "conv1"
    assert greyscale.preprocessing.channels == 1 and greyscale.preprocessing.mean == (0.5,)
    # exported to ONNX as serving builds them: the custom head and the 1-channel stem
    assert dropout.onnx is not None and greyscale.onnx is not None
    assert dropout.labels == activation.labels == greyscale.labels == LABELS


# The onnxruntime engine serves what the import exported and checked beside the weights. The
# activation-head fixture has no export: its fitted head magnifies float rounding (random backbone
# features of the two photos barely differ) past the export check's bound, so publish leaves it out.
SERVED = [
    *((name, "torch") for name in ("dropout-head", "activation-head", "greyscale")),
    ("dropout-head", "onnxruntime"),
    ("greyscale", "onnxruntime"),
]


@pytest.mark.parametrize(("name", "engine"), SERVED)
def test_the_endpoint_answers_what_the_users_own_evaluation_code_does(
    cases: tuple[Path, dict[str, Case]], name: str, engine: str, tmp_path: Path
) -> None:
    store, by_name = cases
    case = by_name[name]
    photo = tmp_path / "hopper.png"
    photo.write_bytes(photos()["hopper-full.png"])

    with serve_store(store, name, tmp_path / "server.log", engine=engine) as server:
        status, body = curl(
            "-H", "Content-Type: image/png", "--data-binary", f"@{photo}", f"{server.url}/predict?top_k=4"
        )

    assert status == 200, body
    with torch.inference_mode():
        expected = torch.softmax(
            case.model(case.transform(full_decode(photo.read_bytes())).unsqueeze(0)), dim=1
        )[0]
    predictions = body["results"][0]["predictions"]
    assert predictions[0]["index"] == int(expected.argmax()) == picture_classes()["hopper-full.png"]
    assert [p["label"] for p in predictions] == [LABELS[p["index"]] for p in predictions]
    for prediction in predictions:
        assert prediction["score"] == pytest.approx(float(expected[prediction["index"]]), abs=2e-3), (
            prediction
        )
