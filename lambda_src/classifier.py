"""The serving pipeline's request verbs over a loaded model: input, predict, output.

As in TorchServe's handlers and the SageMaker inference toolkit, `load` is
`lambda_src.loader.load_model`; an `ImageClassifier` over its result turns image
bytes into the model's input (`input`), runs one forward pass (`predict`) and
builds the response body (`output`); it also describes the model for `GET /health`
(`health`). `ModelInput` is the input verb without a model, so training validates on
exactly what the endpoint would feed the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from lambda_src.artifact import Preprocessing
from lambda_src.preprocessing import eval_transform
from lambda_src.ranking import ClassifierBase, ImageInput, Prediction

__all__ = ["ImageClassifier", "ModelInput", "Prediction"]

if TYPE_CHECKING:
    from lambda_src.loader import LoadedModel


class ModelInput(ImageInput[torch.Tensor]):
    """Image bytes to a model's input tensor: decode within `max_pixels`, then `eval_transform`."""

    def __init__(self, preprocessing: Preprocessing, *, max_pixels: int) -> None:
        super().__init__(preprocessing, max_pixels=max_pixels, preprocess=eval_transform(preprocessing))


class ImageClassifier(ClassifierBase[torch.Tensor]):
    """A loaded model's input, predict and output verbs in torch, and its health body; thread-safe."""

    model: LoadedModel

    def __init__(self, model: LoadedModel, *, max_image_pixels: int) -> None:
        super().__init__(model, ModelInput(model.manifest.preprocessing, max_pixels=max_image_pixels))

    @property
    def threads(self) -> int:
        """torch's intra-op threads."""
        return self.model.torch_threads

    def predict(self, inputs: Sequence[torch.Tensor], top_k: int) -> list[list[Prediction]]:
        """The `top_k` most probable classes of each input, most probable first (one forward pass)."""
        batch = torch.stack(list(inputs))
        with self._forward_lock, torch.inference_mode():
            logits = self.model.network(batch)
        self.require_finite(bool(torch.isfinite(logits).all()))
        probabilities = torch.softmax(logits.float(), dim=1)
        scores, indices = probabilities.topk(self.capped_top_k(top_k), dim=1)
        return self.ranked(scores.tolist(), indices.tolist())
