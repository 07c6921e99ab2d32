"""Manifest schema versions: 2 adds provenance and interpolation, 3 the ONNX export; 1 and 2 still serve."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from lambda_src.artifact import (
    SCHEMA_VERSION,
    Head,
    HeadLayer,
    Manifest,
    OnnxExport,
    Preprocessing,
    Provenance,
)
from lambda_src.errors import ManifestError
from lambda_src.preprocessing import eval_transform
from tests.support.events import api_gateway_event, body_of
from tests.support.images import coloured_image, encode
from tests.support.tiny_model import LABELS, Publication, make_manifest, publish, reference_probabilities

from .conftest import PREFIX, ModelBucket

# Written by `python -m model_training train --demo` before schema version 2 existed.
V1_MANIFEST = Path(__file__).parent / "data" / "manifest-v1.json"


def test_a_published_version_1_manifest_reads_with_bilinear_resizing_and_no_provenance() -> None:
    manifest = Manifest.from_json(V1_MANIFEST.read_bytes())

    assert manifest.schema_version == 1
    assert "interpolation" not in json.loads(V1_MANIFEST.read_text())["preprocessing"]
    assert manifest.preprocessing == Preprocessing(resize=37, crop=32, interpolation="bilinear")
    assert manifest.provenance is None
    assert manifest.labels == ("circle", "cross", "square", "triangle")


def test_version_2_round_trips_provenance_and_interpolation() -> None:
    provenance = Provenance(
        kind="torchvision",
        name="resnet50.IMAGENET1K_V2",
        url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        sha256="11ad3fa6" + "0" * 56,
        license=None,
    )
    manifest = make_manifest(
        "m",
        "v1",
        b"weights",
        preprocessing=Preprocessing(resize=232, crop=224, interpolation="bicubic"),
        provenance=provenance,
    )

    data = json.loads(manifest.to_json())
    assert data["schema_version"] == SCHEMA_VERSION == 4
    assert data["preprocessing"]["interpolation"] == "bicubic"
    assert Manifest.from_json(manifest.to_json()) == manifest


ONNX_EXPORT = OnnxExport(
    sha256="ab" * 32,
    size_bytes=1234,
    opset=20,
    max_logit_difference=2.5e-6,
    tolerance=1e-4,
    checked_inputs=8,
    exporter="torch 2.14.1, onnx 1.23.2",
)


def test_version_3_round_trips_the_onnx_export_and_version_2_reads_without_one() -> None:
    manifest = make_manifest("m", "v1", b"weights")
    with_onnx = Manifest.from_dict({**manifest.to_dict(), "onnx": {**vars(ONNX_EXPORT)}})

    assert with_onnx.onnx == ONNX_EXPORT
    assert Manifest.from_json(with_onnx.to_json()) == with_onnx
    version_2 = {**manifest.to_dict(), "schema_version": 2}
    del version_2["onnx"]
    assert Manifest.from_dict(version_2).onnx is None
    assert Manifest.from_dict(version_2).schema_version == 2


def test_version_4_records_the_onnx_exports_data_file_and_version_3_reads_without_one() -> None:
    with_data = dataclasses.replace(ONNX_EXPORT, data_sha256="cd" * 32, data_size_bytes=98_765)
    manifest = dataclasses.replace(make_manifest("m", "v1", b"weights"), onnx=with_data)

    data = json.loads(manifest.to_json())
    assert (data["onnx"]["data_sha256"], data["onnx"]["data_size_bytes"]) == ("cd" * 32, 98_765)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert with_data.files == {"model.onnx": ("ab" * 32, 1234), "model.onnx.data": ("cd" * 32, 98_765)}
    # A version 3 export lists one file, model.onnx, which holds the weights
    version_3 = {**data, "schema_version": 3, "onnx": {**vars(ONNX_EXPORT)}}
    assert Manifest.from_dict(version_3).onnx == ONNX_EXPORT
    assert ONNX_EXPORT.files == {"model.onnx": ("ab" * 32, 1234)}


def test_version_3_records_a_custom_head_and_a_one_channel_input() -> None:
    head = Head(
        module="fc",
        layers=(
            HeadLayer("dropout"),
            HeadLayer("linear", 512, 64),
            HeadLayer("relu"),
            HeadLayer("linear", 64, 2),
        ),
    )
    manifest = make_manifest(
        "m",
        "v1",
        b"weights",
        preprocessing=Preprocessing(mean=(0.5,), std=(0.25,), channels=1),
        head=head,
        input_conv="conv1",
        labels=("cat", "dog"),
    )

    data = json.loads(manifest.to_json())
    assert data["head"]["layers"][1] == {"kind": "linear", "in_features": 512, "out_features": 64}
    assert data["input_conv"] == "conv1" and data["preprocessing"]["channels"] == 1
    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda onnx: onnx.update(sha256="not-hex"), "onnx.sha256 must be 64 lowercase hex digits"),
        (lambda onnx: onnx.update(size_bytes=0), "onnx.size_bytes must be a positive integer"),
        (lambda onnx: onnx.update(opset="20"), "onnx.opset must be a positive integer"),
        (lambda onnx: onnx.update(max_logit_difference=-1), "onnx.max_logit_difference must be"),
        (lambda onnx: onnx.pop("tolerance"), "onnx is missing tolerance"),
        (
            lambda onnx: onnx.update(data_sha256="cd" * 32),
            "onnx.data_sha256 and onnx.data_size_bytes go together",
        ),
        (
            lambda onnx: onnx.update(data_size_bytes=10),
            "onnx.data_sha256 and onnx.data_size_bytes go together",
        ),
        (
            lambda onnx: onnx.update(data_sha256="CD" * 32, data_size_bytes=10),
            "onnx.data_sha256 must be 64 lowercase hex digits",
        ),
        (
            lambda onnx: onnx.update(data_sha256="cd" * 32, data_size_bytes=True),
            "onnx.data_size_bytes must be a positive integer",
        ),
        (
            lambda onnx: onnx.update(data_sha256="cd" * 32, data_size_bytes=-5),
            "onnx.data_size_bytes must be a positive integer",
        ),
    ],
)
def test_a_bad_onnx_entry_is_refused_in_words(change: Callable[[dict[str, Any]], None], words: str) -> None:
    onnx = dict(vars(ONNX_EXPORT))
    change(onnx)
    with pytest.raises(ManifestError, match=words):
        Manifest.from_dict({**make_manifest("m", "v1", b"weights").to_dict(), "onnx": onnx})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda data: data.update(input_conv=None),
            "input_conv names the first convolution of a 1-channel model",
        ),
        (
            lambda data: data["preprocessing"].update(mean=[0.5, 0.5, 0.5]),
            "preprocessing.mean must be one number (finite ones)",
        ),
        (lambda data: data["head"]["layers"].append({"kind": "swish"}), "head layer kind must be one of"),
        (
            lambda data: data["head"]["layers"][1].update(out_features=3),
            "head has 3 outputs but the manifest lists 2",
        ),
        (lambda data: data["head"]["layers"][0].update(in_features=4), "head layer dropout needs no sizes"),
    ],
)
def test_inconsistent_version_3_fields_are_refused(change: Any, words: str) -> None:
    head = Head(module="fc", layers=(HeadLayer("dropout"), HeadLayer("linear", 512, 2)))
    manifest = make_manifest(
        "m",
        "v1",
        b"w",
        preprocessing=Preprocessing(mean=(0.5,), std=(0.25,), channels=1),
        head=head,
        input_conv="conv1",
        labels=("cat", "dog"),
    )
    data = json.loads(manifest.to_json())
    change(data)

    with pytest.raises(ManifestError, match=re.escape(words)):
        Manifest.from_dict(data)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda data: data.update(schema_version=5), "schema_version 5 is not supported"),
        (lambda data: data["preprocessing"].update(interpolation="lanczos"), "interpolation must be one of"),
        (lambda data: data.update(provenance={"kind": "magic"}), "provenance.kind must be one of"),
        (lambda data: data.update(provenance="torchvision"), "provenance must be an object"),
    ],
)
def test_unknown_versions_and_values_are_refused_in_words(
    change: Callable[[dict[str, Any]], None], words: str
) -> None:
    data = json.loads(V1_MANIFEST.read_text())
    change(data)
    with pytest.raises(ManifestError, match=words):
        Manifest.from_dict(data)


def _v1_manifest_for(name: str, weights: bytes) -> Manifest:
    """The published version 1 manifest, pointed at the test weights (the only fields tied to them)."""
    data = json.loads(V1_MANIFEST.read_text())
    data.update(
        model_name=name,
        version="v1",
        architecture="resnet18",
        labels=list(LABELS),
        num_classes=len(LABELS),
        weights_sha256=make_manifest(name, "v1", weights).weights_sha256,
        weights_size_bytes=len(weights),
    )
    data["preprocessing"].update(resize=40, crop=32)
    return Manifest.from_dict(data)


def test_a_version_1_model_is_served_as_before(
    model_bucket: ModelBucket, tiny_model: torch.nn.Module, tiny_weights: bytes, make_service: Callable
) -> None:
    manifest = _v1_manifest_for("colours-v1", tiny_weights)
    assert manifest.schema_version == 1
    publish(
        model_bucket.write,
        prefix=PREFIX,
        model_name="colours-v1",
        version="v1",
        weights=tiny_weights,
        manifest=manifest,
    )
    service, _, _ = make_service("colours-v1")
    jpeg = encode(coloured_image("green", size=(64, 48), seed=7), "JPEG", quality=95)

    response = service.handle(api_gateway_event("POST", "/predict", body=jpeg, content_type="image/jpeg"))

    assert response["statusCode"] == 200, response["body"]
    best = body_of(response)["results"][0]["predictions"][0]
    expected = reference_probabilities(tiny_model, jpeg)
    assert best["label"] == LABELS[int(expected.argmax())]
    assert best["score"] == pytest.approx(float(expected.max()), abs=1e-4)


def test_serving_resizes_with_the_manifests_interpolation(
    model_bucket: ModelBucket, tiny_weights: bytes, published: Publication, make_service: Callable
) -> None:
    bicubic = Preprocessing(resize=40, crop=32, interpolation="bicubic")
    manifest = make_manifest("colours-bicubic", "v1", tiny_weights, preprocessing=bicubic)
    publish(
        model_bucket.write,
        prefix=PREFIX,
        model_name="colours-bicubic",
        version="v1",
        weights=tiny_weights,
        manifest=manifest,
    )
    service, _, _ = make_service("colours-bicubic")
    assert service.load()
    png = encode(coloured_image("blue", size=(90, 70), seed=3), "PNG")
    image = Image.open(io.BytesIO(png)).convert("RGB")

    served = service.holder.get().input(png)

    assert torch.equal(served, eval_transform(bicubic)(image))
    bilinear = eval_transform(Preprocessing(resize=40, crop=32))(image)
    assert not torch.allclose(served, bilinear, atol=1e-3)
