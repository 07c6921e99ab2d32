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
from typing import TYPE_CHECKING

import torch

from lambda_src.artifact import Preprocessing
from lambda_src.images import decode_image
from lambda_src.preprocessing import eval_transform
from lambda_src.ranking import ClassifierBase, Prediction
from lambda_src.timing import Phase, PhaseTimer, optional_phase

__all__ = ["ImageClassifier", "ModelInput", "Prediction"]

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
        with optional_phase(timer, Phase.DECODE):
            image = decode_image(
                data,
                max_pixels=self.max_pixels,
                min_side=self.preprocessing.resize,
                what=what,
                reduce=self.preprocessing.interpolation != "nearest",
            )
        with optional_phase(timer, Phase.PREPROCESS):
            return self._transform(image)


class ImageClassifier(ClassifierBase):
    """A loaded model's input, predict and output verbs in torch, and its health body; thread-safe."""

    model: LoadedModel

    def __init__(self, model: LoadedModel, *, max_image_pixels: int) -> None:
        self.model = model
        self._model_input = ModelInput(model.manifest.preprocessing, max_pixels=max_image_pixels)
        # Concurrent forward passes would each start the full set of torch threads and
        # fight for the same CPUs; one at a time gives the same throughput, steadier latency.
        self._forward_lock = threading.Lock()

    @property
    def threads(self) -> int:
        """torch's intra-op threads."""
        return self.model.torch_threads

    def input(self, data: bytes, *, what: str = "the image", timer: PhaseTimer | None = None) -> torch.Tensor:
        """The model's (3, crop, crop) input for the image `data`: decoded, then preprocessed.

        The manifest's preprocessing applies; a 4xx `ApiError` naming `what` if the image is unusable.
        """
        return self._model_input(data, what=what, timer=timer)

    def predict(self, inputs: Sequence[torch.Tensor], top_k: int) -> list[list[Prediction]]:
        """The `top_k` most probable classes of each input, most probable first (one forward pass)."""
        batch = torch.stack(list(inputs))
        with self._forward_lock, torch.inference_mode():
            logits = self.model.network(batch)
        self.require_finite(bool(torch.isfinite(logits).all()))
        probabilities = torch.softmax(logits.float(), dim=1)
        scores, indices = probabilities.topk(self.capped_top_k(top_k), dim=1)
        return self.ranked(scores.tolist(), indices.tolist())
