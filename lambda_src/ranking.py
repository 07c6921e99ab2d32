"""What both engines' classifiers share: ranked predictions and the response body (torch-free).

`ImageClassifier` (torch, `lambda_src.classifier`) and `OnnxClassifier` (onnxruntime,
`lambda_src.onnx_engine`) extend `ClassifierBase`, so the `output` verb, the capped top-k
and the name and version shown are defined once, whichever engine serves the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lambda_src.artifact import Manifest
from lambda_src.errors import ModelUnavailable, UnavailableReason


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


class ClassifierBase:
    """The engine-independent half of a classifier: the model served, top-k, `output`, `health`."""

    model: LoadedArtifact

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
