"""Test images: pictures of three colours with noise, encoded in any format, and base64."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

COLOURS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 210)}


def coloured_image(label: str, *, size: tuple[int, int] = (48, 48), seed: int = 0) -> Image.Image:
    """An RGB picture of class `label`: its colour, a random brightness and per-pixel noise."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[label], dtype=np.float32) * rng.uniform(0.7, 1.15)
    noise = rng.normal(0, 25, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
