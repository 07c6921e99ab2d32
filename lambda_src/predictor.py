"""Pictures in, ranked classes out: preprocessing from the manifest, one forward pass, top-k."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from lambda_src.loader import LoadedModel


@dataclass(frozen=True)
class Prediction:
    """One class of one image: its label, its index in the model's output and its probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "index": self.index, "score": self.score}


class Predictor:
    """Runs a loaded model; safe to share between threads."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        # Concurrent forward passes would each start the full set of torch threads and
        # fight for the same CPUs; one at a time gives the same throughput, steadier latency.
        self._forward_lock = threading.Lock()

    @property
    def num_classes(self) -> int:
        return self.model.manifest.num_classes

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's input for one RGB image, (3, crop, crop), as the manifest's preprocessing says."""
        return self.model.transform(image)

    def predict(self, inputs: Sequence[torch.Tensor], top_k: int) -> list[list[Prediction]]:
        """The `top_k` most probable classes of each input, most probable first (one forward pass)."""
        k = min(top_k, self.num_classes)
        batch = torch.stack(list(inputs))
        with self._forward_lock, torch.inference_mode():
            logits = self.model.network(batch)
        probabilities = torch.softmax(logits.float(), dim=1)
        scores, indices = probabilities.topk(k, dim=1)
        labels = self.model.manifest.labels
        return [
            [
                Prediction(label=labels[index], index=index, score=score)
                for score, index in zip(row_scores, row_indices, strict=True)
            ]
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True)
        ]
