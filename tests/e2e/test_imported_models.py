"""Imported models served: torchvision's, timm's and your own weights, as API Gateway events and over HTTP.

Each kind is imported with the command line (from local stand-ins for the downloads:
random weights of the real shapes, with a head fitted to the test photos so that the
top-1 is as clear as a trained model's), published to a local store, then served two
ways: the handler's service fed real API Gateway proxy events, and `python -m
local_endpoint` answering curl. The answers must be the source library's own pipeline's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import timm.data
import torch
import torchvision
from torchvision.transforms._presets import ImageClassification

from lambda_src.architectures import build_model
from lambda_src.model_store import ModelLocation
from lambda_src.service import InferenceService
from lambda_src.settings import RuntimeSettings
from model_training.cli import main
from tests.support.events import api_gateway_event, body_of
from tests.support.imported_models import (
    Transform,
    fill_hub_cache,
    fit_head,
    full_decode,
    photos,
    picture_classes,
    save_hash_named,
    serve_weights_from,
    use_hub_cache,
    use_torch_home,
)
from tests.support.local_server import serve_store

from .conftest import curl

TORCHVISION_WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V2  # resize 232: not the default
TIMM_NAME = "mobilenetv3_small_050.lamb_in1k"
OWN_LABELS = ("cat", "dog", "fox")
KINDS = ("torchvision", "timm", "own weights")


@dataclass(frozen=True)
class Imported:
    """A published imported model and what the source library's own pipeline says about a photo."""

    model_name: str
    labels: tuple[str, ...]
    model: torch.nn.Module  # loaded by the source library itself, where it has a loader
    transform: Transform  # the source library's own eval transform

    def reference(self, data: bytes) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.model(self.transform(full_decode(data)).unsqueeze(0)), dim=1)[0]


def _import(*argv: str) -> None:
    assert main(["import", *argv, "--no-progress"]) == 0


def _torchvision(patch: pytest.MonkeyPatch, root: Path, store: Path) -> Imported:
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    fit_head(model, TORCHVISION_WEIGHTS.transforms())
    source = save_hash_named(model.state_dict(), root / "source", "resnet50")
    use_torch_home(patch, root / "torch")
    serve_weights_from(patch, TORCHVISION_WEIGHTS, source)
    _import("--pretrained", "torchvision:resnet50.IMAGENET1K_V2", "--publish-to", str(store))
    # torchvision's own loading, from the cache the import filled.
    reference = torchvision.models.get_model("resnet50", weights=TORCHVISION_WEIGHTS).eval()
    labels = tuple(TORCHVISION_WEIGHTS.meta["categories"])
    return Imported("resnet50.IMAGENET1K_V2", labels, reference, TORCHVISION_WEIGHTS.transforms())


def _timm(patch: pytest.MonkeyPatch, root: Path, store: Path) -> Imported:
    torch.manual_seed(0)
    model = timm.create_model(TIMM_NAME, pretrained=False)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    fit_head(model, transform)
    fill_hub_cache(root / "hub", f"timm/{TIMM_NAME}", model.state_dict())
    use_hub_cache(patch, root / "hub")
    _import("--pretrained", f"timm:{TIMM_NAME}", "--publish-to", str(store))
    reference = timm.create_model(TIMM_NAME, pretrained=True).eval()  # timm's own loading
    labels = tuple(timm.data.ImageNetInfo("imagenet-1k").label_descriptions())
    return Imported(TIMM_NAME, labels, reference, transform)


def _own_weights(root: Path, store: Path) -> Imported:
    """A notebook's fine-tuned model, saved as DistributedDataParallel leaves it: {'net': module.*}."""
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", len(OWN_LABELS))
    transform = ImageClassification(crop_size=224)  # torchvision's ImageNet eval preset: the CLI's defaults
    fit_head(model, transform)
    torch.save({"net": {f"module.{k}": v for k, v in model.state_dict().items()}}, root / "pets.pth")
    (root / "labels.txt").write_text("\n".join(OWN_LABELS))
    _import(
        "--weights",
        str(root / "pets.pth"),
        "--architecture",
        "mobilenet_v3_small",
        "--labels",
        str(root / "labels.txt"),
        "--publish-to",
        str(store),
    )
    return Imported("pets", OWN_LABELS, model.eval(), transform)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Imported]]]:
    root = tmp_path_factory.mktemp("imports")
    store = root / "store"
    with pytest.MonkeyPatch.context() as patch:
        kinds = {
            "torchvision": _torchvision(patch, root, store),
            "timm": _timm(patch, root, store),
            "own weights": _own_weights(root, store),
        }
        yield store, kinds


@pytest.mark.parametrize("kind", KINDS)
def test_api_gateway_events_get_the_source_pipelines_answer(
    imported: tuple[Path, dict[str, Imported]], kind: str
) -> None:
    store, kinds = imported
    model = kinds[kind]
    location = ModelLocation(store_uri=str(store), model_name=model.model_name, version="latest")
    service = InferenceService(location, settings=RuntimeSettings(torch_threads=1))
    assert service.load()

    for photo, data in photos().items():
        content_type = "image/png" if photo.endswith(".png") else "image/jpeg"
        response = service.handle(api_gateway_event("POST", "/predict", body=data, content_type=content_type))

        assert response["statusCode"] == 200, response["body"]
        best = body_of(response)["results"][0]["predictions"][0]
        expected = model.reference(data)
        assert best["index"] == int(expected.argmax()) == picture_classes()[photo], photo
        assert best["label"] == model.labels[best["index"]]
        if "reduced" not in photo:  # same input to one 8-bit step: same probabilities
            assert best["score"] == pytest.approx(float(expected.max()), abs=2e-3), photo


@pytest.mark.parametrize("kind", KINDS)
def test_the_local_endpoint_answers_curl_with_the_source_pipelines_top_1(
    imported: tuple[Path, dict[str, Imported]], kind: str, tmp_path: Path
) -> None:
    store, kinds = imported
    model = kinds[kind]
    photo = tmp_path / "grace-hopper.jpg"
    photo.write_bytes(photos()["hopper-reduced.jpg"])

    with serve_store(store, model.model_name, tmp_path / "server.log") as server:
        status, body = curl(
            "-H", "Content-Type: image/jpeg", "--data-binary", f"@{photo}", f"{server.url}/predict"
        )

    assert status == 200, body
    assert body["model"] == {"name": model.model_name, "version": "v1"}
    best = body["results"][0]["predictions"][0]
    expected = model.reference(photo.read_bytes())
    assert best["index"] == int(expected.argmax()) == picture_classes()["hopper-reduced.jpg"]
    assert best["label"] == model.labels[best["index"]]
