"""Image to tensor, exactly as the manifest says: the one definition of preprocessing.

Training uses `to_rgb` and `eval_transform` for validation (and builds its
augmentation around the same mean/std); serving uses them for every request.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode, v2

from lambda_src.artifact import Preprocessing


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB: apply EXIF orientation, composite alpha on white, convert L/P/CMYK/I."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        # 16-bit greyscale (PNG): scale to 8 bits; a plain convert clips everything above 255 to white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def eval_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side (with the manifest's filter), centre-crop, scale to [0, 1], normalise."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(
                preprocessing.resize,
                interpolation=InterpolationMode(preprocessing.interpolation),
                antialias=True,
            ),
            v2.CenterCrop(preprocessing.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        ]
    )
