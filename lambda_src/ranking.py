"""What both engines' classifiers share: the input verb, ranked predictions and the response body.

`ImageClassifier` (torch, `lambda_src.classifier`) and `OnnxClassifier` (onnxruntime,
`lambda_src.onnx_engine`) extend `ClassifierBase`, so the `input` verb (decoding, then the
engine's own preprocessing: `ImageInput`), the one-forward-pass-at-a-time lock, the `output`
verb, the capped top-k and the name and version shown are defined once, whichever engine
serves the model. Torch-free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from lambda_src.artifact import Manifest, Preprocessing
from lambda_src.errors import ModelUnavailable, UnavailableReason
from lambda_src.images import decode_image
from lambda_src.timing import Phase, PhaseTimer, optional_phase

if TYPE_CHECKING:
    from PIL import Image

InputT = TypeVar("InputT")


@dataclass(frozen=True)
class Prediction:
    """One class of one image: its label, its index in the model's output and its probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "index": self.index, "score": self.score}


class LoadedArtifact(Protocol):
    """What every engine's loaded model carries: the manifest it was verified against."""

    @property
    def manifest(self) -> Manifest: ...


class ImageInput(Generic[InputT]):
    """Image bytes to a model's input: decode within `max_pixels`, then the engine's `preprocess`.

    JPEGs are decoded at a reduced scale when much larger than the resize size, except for
    nearest-neighbour resizing (it picks single pixels, which a reduced decode has averaged);
    only JPEG, PNG and WebP are accepted (see `lambda_src.images`).
    """

    def __init__(
        self,
        preprocessing: Preprocessing,
        *,
        max_pixels: int,
        preprocess: Callable[[Image.Image], InputT],
    ) -> None:
        self.preprocessing = preprocessing
        self.max_pixels = max_pixels
        self._preprocess = preprocess

    def __call__(self, data: bytes, *, what: str = "the image", timer: PhaseTimer | None = None) -> InputT:
        """The (channels, crop, crop) input for `data`; a 4xx `ApiError` naming `what` if unusable."""
        with optional_phase(timer, Phase.DECODE):
            image = decode_image(
                data,
                max_pixels=self.max_pixels,
                min_side=self.preprocessing.resize,
                what=what,
                reduce=self.preprocessing.interpolation != "nearest",
            )
        with optional_phase(timer, Phase.PREPROCESS):
            return self._preprocess(image)


class ClassifierBase(Generic[InputT]):
    """The engine-independent half of a classifier: the model served, `input`, top-k, `output`, `health`."""

    model: LoadedArtifact

    def __init__(self, model: LoadedArtifact, model_input: ImageInput[InputT]) -> None:
        self.model = model
        self._model_input = model_input
        # Concurrent forward passes would each start the engine's full set of threads and
        # fight for the same CPUs; one at a time gives the same throughput, steadier latency.
        self._forward_lock = threading.Lock()

    def input(self, data: bytes, *, what: str = "the image", timer: PhaseTimer | None = None) -> InputT:
        """The model's (channels, crop, crop) input for the image `data`: decoded, then preprocessed.

        The manifest's preprocessing applies; a 4xx `ApiError` naming `what` if the image is unusable.
        """
        return self._model_input(data, what=what, timer=timer)

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

    @staticmethod
    def require_finite(outputs_are_finite: bool) -> None:
        """Refuse outputs holding NaN or infinity: JSON cannot carry them, so no such score is served.

        Warm-up proved the model finite on a blank image; an input can still overflow it.
        """
        if not outputs_are_finite:
            raise ModelUnavailable(
                UnavailableReason.INVALID_MODEL,
                "the model's outputs for this input are not finite numbers (NaN or infinity)",
            )

    def capped_top_k(self, top_k: int) -> int:
        """`top_k` as served: asking for more classes than the model has means all of them."""
        return min(top_k, self.num_classes)

    def ranked(
        self, scores: Sequence[Sequence[float]], indices: Sequence[Sequence[int]]
    ) -> list[list[Prediction]]:
        """Each image's top classes as `Prediction`s, from its scores and class indices (best first)."""
        labels = self.model.manifest.labels
        return [
            [
                Prediction(label=labels[index], index=index, score=score)
                for score, index in zip(row_scores, row_indices, strict=True)
            ]
            for row_scores, row_indices in zip(scores, indices, strict=True)
        ]

    def output(self, ranked: Sequence[Sequence[Prediction]], top_k: int) -> dict[str, Any]:
        """The `POST /predict` response body for `predict`'s result."""
        return {
            "model": self.model_id,
            "top_k": self.capped_top_k(top_k),
            "results": [{"predictions": [p.to_dict() for p in predictions]} for predictions in ranked],
        }
