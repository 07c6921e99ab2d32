"""The built-in demo data set: coloured shapes on noisy backgrounds, generated on the fly.

Nothing is downloaded: every image comes from a seeded random generator, so the
same seed always gives the same pictures. `write_examples` saves a few unseen
images per class to disk, for trying a served model with curl.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEMO_CLASSES = ("circle", "cross", "square", "triangle")
DEMO_IMAGE_PIXELS = 64  # side of the generated square images
EXAMPLES_SEED_OFFSET = 10_000  # examples never reuse the training images' random streams

_FORMATS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png"), "webp": ("WEBP", ".webp")}


def _contrasting_colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and a shape colour far enough apart to be told apart after noise."""
    while True:
        background, shape = rng.integers(0, 256, size=(2, 3))
        if np.abs(background - shape).sum() > 200:
            return tuple(int(v) for v in background), tuple(int(v) for v in shape)


def _rotated(points: list[tuple[float, float]], centre: tuple[float, float], angle: float) -> list[tuple]:
    cx, cy = centre
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]


def _outline(shape: str, centre: tuple[float, float], radius: float, angle: float) -> list[tuple]:
    """Polygon corners of `shape` (everything but the circle), rotated by `angle` radians."""
    cx, cy = centre
    if shape == "square":
        r = radius * 0.85
        points = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif shape == "triangle":
        points = [
            (cx + radius * math.cos(a), cy + radius * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    elif shape == "cross":
        r, w = radius, radius * 0.35
        points = [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    else:
        raise ValueError(f"unknown demo shape {shape!r}")
    return _rotated(points, centre, angle)


def render_shape(shape: str, rng: np.random.Generator, size: int = DEMO_IMAGE_PIXELS) -> Image.Image:
    """One RGB image of `shape` with random size, position, rotation and colours, plus noise."""
    background, colour = _contrasting_colours(rng)
    image = Image.new("RGB", (size, size), background)
    radius = size * rng.uniform(0.3, 0.45)
    margin = radius * 1.05
    centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        cx, cy = centre
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        draw.polygon(_outline(shape, centre, radius, rng.uniform(-0.35, 0.35)), fill=colour)
    noise = rng.normal(0.0, 12.0, size=(size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def demo_images(
    images_per_class: int, seed: int, size: int = DEMO_IMAGE_PIXELS
) -> list[tuple[Image.Image, int]]:
    """`images_per_class` (image, class index) pairs per demo class, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return [
        (render_shape(shape, rng, size), index)
        for _ in range(images_per_class)
        for index, shape in enumerate(DEMO_CLASSES)
    ]


def write_examples(
    folder: Path | str,
    *,
    per_class: int = 1,
    seed: int = 0,
    image_format: str = "jpeg",
    size: int = DEMO_IMAGE_PIXELS,
) -> list[Path]:
    """Save `per_class` unseen demo images of each class as `<class>-<n>.<ext>`; return their paths.

    The images come from a different random stream than training with the same
    seed, so a model trained on the demo set has never seen them.
    """
    if image_format not in _FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(_FORMATS)}, got {image_format!r}")
    pil_format, extension = _FORMATS[image_format]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + EXAMPLES_SEED_OFFSET)
    paths = []
    for number in range(1, per_class + 1):
        for shape in DEMO_CLASSES:
            path = folder / f"{shape}-{number}{extension}"
            render_shape(shape, rng, size).save(path, format=pil_format)
            paths.append(path)
    return paths
