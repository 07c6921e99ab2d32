"""A tiny real model and its publication, as the training side publishes.

The model is a torchvision resnet18 trained for a few steps on generated images whose
classes differ by colour (support.images), published with the artifact contract of
`lambda_src.artifact`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import torch
import torchvision
from PIL import Image

from lambda_src.architectures import build_model
from lambda_src.artifact import (
    Manifest,
    Preprocessing,
    latest_key,
    manifest_key,
    sha256_hex,
    weights_key,
)
from lambda_src.preprocessing import eval_transform, to_rgb
from tests.support.images import coloured_image

LABELS = ("red", "green", "blue")
PREPROCESSING = Preprocessing(resize=40, crop=32)
ARCHITECTURE = "resnet18"


def train_tiny_model(*, steps: int = 15, seed: int = 0) -> torch.nn.Module:
    """A resnet18 that tells the three colours apart, trained through the serving preprocessing."""
    torch.manual_seed(seed)
    transform = eval_transform(PREPROCESSING)
    samples = [(label, index) for index in range(12) for label in LABELS]
    inputs = torch.stack(
        [transform(coloured_image(label, seed=100 + i)) for i, (label, _) in enumerate(samples)]
    )
    targets = torch.tensor([LABELS.index(label) for label, _ in samples])
    model = build_model(ARCHITECTURE, len(LABELS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randperm(len(samples), generator=generator)[:12]
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def reference_probabilities(model: torch.nn.Module, image_bytes: bytes) -> torch.Tensor:
    """The model run directly on an encoded image: what the handler's scores must equal."""
    image = to_rgb(Image.open(io.BytesIO(image_bytes)))
    with torch.inference_mode():
        logits = model(eval_transform(PREPROCESSING)(image).unsqueeze(0))
    return torch.softmax(logits, dim=1)[0]


@dataclass(frozen=True)
class Publication:
    """What a test published: the manifest and the bytes of model.pt."""

    manifest: Manifest
    weights: bytes


def make_manifest(model_name: str, version: str, weights: bytes, **overrides: Any) -> Manifest:
    fields: dict[str, Any] = {
        "model_name": model_name,
        "version": version,
        "architecture": ARCHITECTURE,
        "labels": LABELS,
        "weights_sha256": sha256_hex(weights),
        "weights_size_bytes": len(weights),
        "preprocessing": PREPROCESSING,
        "metrics": {"val_accuracy": 1.0},
        "framework": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "created_at": datetime.now(UTC).isoformat(),
    }
    fields.update(overrides)
    return Manifest(**fields)


def publish(
    write: Callable[[str, bytes], None],
    *,
    prefix: str,
    model_name: str,
    version: str,
    weights: bytes,
    manifest: Manifest | None = None,
    point_latest: bool = True,
) -> Publication:
    """Write model.pt, manifest.json and (optionally) the LATEST pointer, in the contract's order."""
    manifest = manifest or make_manifest(model_name, version, weights)
    write(weights_key(prefix, model_name, version), weights)
    write(manifest_key(prefix, model_name, version), manifest.to_json())
    if point_latest:
        write(latest_key(prefix, model_name), version.encode("utf-8"))
    return Publication(manifest=manifest, weights=weights)
