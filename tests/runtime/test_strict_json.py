"""Never a 200 that is not JSON: no NaN or infinity reaches a response or a batch result line.

Warm-up refuses a model whose outputs on a blank image are not finite (tests/runtime/
test_model_faults.py); here a model finite on a blank image overflows on a real one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lambda_src.api_gateway import json_response
from lambda_src.batch import BatchWorker, FolderImages, ModelCache
from lambda_src.classifier import ImageClassifier
from lambda_src.errors import ModelUnavailable
from lambda_src.loader import LoadedModel
from tests.support.events import api_gateway_event, body_of
from tests.support.images import coloured_image, encode
from tests.support.tiny_model import make_manifest

PNG = encode(coloured_image("red", seed=3), "PNG")


class _OverflowsOnRealImages(torch.nn.Module):
    """Finite on a blank image (so warm-up passes), infinite on anything else."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        scale = torch.where(batch.abs().sum(dim=(1, 2, 3)) > 0, math.inf, 1.0)
        return scale[:, None] * torch.ones(batch.shape[0], 3)


def _classifier() -> ImageClassifier:
    manifest = make_manifest("overflows", "v1", b"weights")
    loaded = LoadedModel(manifest=manifest, network=_OverflowsOnRealImages(), torch_threads=1)
    return ImageClassifier(loaded, max_image_pixels=10_000_000)


def test_outputs_that_are_not_finite_are_a_503_invalid_model_not_a_nan_score() -> None:
    classifier = _classifier()
    with pytest.raises(ModelUnavailable) as raised:
        classifier.predict([classifier.input(PNG, what="the image")], 3)
    assert raised.value.reason == "invalid_model"
    assert "not finite" in raised.value.detail


def test_batch_lines_of_outputs_that_are_not_finite_are_errors_in_strict_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "red.png").write_bytes(PNG)
    # The cache loads through the engines' one entry point: here it gets the overflowing model.
    monkeypatch.setattr("lambda_src.batch.load_classifier", lambda *_, **__: _classifier())
    cache = ModelCache(str(tmp_path), "overflows")
    (line,) = BatchWorker(cache).classify(FolderImages(tmp_path), ["red.png"], version="v1")
    assert "predictions" not in line
    assert line["error"]["code"] == "model_unavailable"
    json.dumps(line, allow_nan=False)  # strict JSON: raises on NaN or infinity


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_response_body_is_strict_json_or_not_sent(value: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        json_response(200, {"score": value})


def test_the_method_token_is_case_sensitive(service: object) -> None:
    answer = service.handle(api_gateway_event("get", "/health"))  # type: ignore[attr-defined]
    assert answer["statusCode"] == 405
    assert answer["headers"]["Allow"] == "GET"
    assert body_of(answer)["error"]["code"] == "method_not_allowed"
