"""The serving pipeline's request verbs over a loaded model: input, predict, output.

As in TorchServe's handlers and the SageMaker inference toolkit, `load` is
`lambda_src.loader.load_model`; an `ImageClassifier` over its result turns image
bytes into the model's input (`input`), runs one forward pass (`predict`) and
builds the response body (`output`); it also describes the model for `GET /health`
(`health`). `ModelInput` is the input verb without a model, so training validates on
exactly what the endpoint would feed the model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from lambda_src.artifact import Preprocessing
from lambda_src.errors import ModelUnavailable, UnavailableReason
from lambda_src.images import decode_image
from lambda_src.preprocessing import eval_transform
from lambda_src.timing import Phase, PhaseTimer

if TYPE_CHECKING:
    from lambda_src.loader import LoadedModel


class ModelInput:
    """Image bytes to a model's input tensor: decode within `max_pixels`, then `preprocessing`.

    JPEGs are decoded at the smallest reduced scale that keeps both sides at least the
    resize size; only JPEG, PNG and WebP are accepted (see `lambda_src.images`).
    """

    def __init__(self, preprocessing: Preprocessing, *, max_pixels: int) -> None:
        self.preprocessing = preprocessing
        self.max_pixels = max_pixels
        self._transform = eval_transform(preprocessing)

    def __call__(
        self, data: bytes, *, what: str = "the image", timer: PhaseTimer | None = None
    ) -> torch.Tensor:
        """The (3, crop, crop) input for the image `data`; a 4xx `ApiError` naming `what` if unusable."""
        with _phase(timer, Phase.DECODE):
            image = decode_image(
                data, max_pixels=self.max_pixels, min_side=self.preprocessing.resize, what=what
            )
        with _phase(timer, Phase.PREPROCESS):
            return self._transform(image)


def _phase(timer: PhaseTimer | None, name: str) -> AbstractContextManager[None]:
    return timer.phase(name) if timer is not None else nullcontext()


@dataclass(frozen=True)
class Prediction:
    """One class of one image: its label, its index in the model's output and its probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "index": self.index, "score": self.score}


class ImageClassifier:
    """A loaded model's input, predict and output verbs and its health body; safe to share between threads."""

    def __init__(self, model: LoadedModel, *, max_image_pixels: int) -> None:
        self.model = model
        self._model_input = ModelInput(model.manifest.preprocessing, max_pixels=max_image_pixels)
        # Concurrent forward passes would each start the full set of torch threads and
        # fight for the same CPUs; one at a time gives the same throughput, steadier latency.
        self._forward_lock = threading.Lock()

    @property
    def num_classes(self) -> int:
        return self.model.manifest.num_classes

    @property
    def model_id(self) -> dict[str, str]:
        """The name and version served, as responses show them."""
        manifest = self.model.manifest
        return {"name": manifest.model_name, "version": manifest.version}

    def health(self) -> dict[str, Any]:
        """The `GET /health` response body: the model served, its architecture and class count."""
        manifest = self.model.manifest
        model = {**self.model_id, "architecture": manifest.architecture, "num_classes": manifest.num_classes}
        return {"status": "ok", "model": model}

    def input(self, data: bytes, *, what: str = "the image", timer: PhaseTimer | None = None) -> torch.Tensor:
        """The model's (3, crop, crop) input for the image `data`: decoded, then preprocessed.

        The manifest's preprocessing applies; a 4xx `ApiError` naming `what` if the image is unusable.
        """
        return self._model_input(data, what=what, timer=timer)

    def capped_top_k(self, top_k: int) -> int:
        """`top_k` as served: asking for more classes than the model has means all of them."""
        return min(top_k, self.num_classes)

    def predict(self, inputs: Sequence[torch.Tensor], top_k: int) -> list[list[Prediction]]:
        """The `top_k` most probable classes of each input, most probable first (one forward pass)."""
        batch = torch.stack(list(inputs))
        with self._forward_lock, torch.inference_mode():
            logits = self.model.network(batch)
        if not torch.isfinite(logits).all():
            # Warm-up proved the model finite on a blank image; this image overflows it. No score
            # of NaN or infinity ever reaches a response: JSON cannot carry them.
            raise ModelUnavailable(
                UnavailableReason.INVALID_MODEL,
                "the model's outputs for this input are not finite numbers (NaN or infinity)",
            )
        probabilities = torch.softmax(logits.float(), dim=1)
        scores, indices = probabilities.topk(self.capped_top_k(top_k), dim=1)
        labels = self.model.manifest.labels
        return [
            [
                Prediction(label=labels[index], index=index, score=score)
                for score, index in zip(row_scores, row_indices, strict=True)
            ]
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True)
        ]

    def output(self, ranked: Sequence[Sequence[Prediction]], top_k: int) -> dict[str, Any]:
        """The `POST /predict` response body for `predict`'s result."""
        return {
            "model": self.model_id,
            "top_k": self.capped_top_k(top_k),
            "results": [{"predictions": [p.to_dict() for p in predictions]} for predictions in ranked],
        }
