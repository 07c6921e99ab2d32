"""Image to tensor, exactly as the manifest says: the one definition of preprocessing.

Training uses `to_rgb` and `eval_transform` for validation (and builds its
augmentation around the same mean/std); serving uses them for every request.
(`to_rgb` lives in the torch-free `lambda_src.images`, which the onnxruntime engine shares.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from lambda_src.artifact import Preprocessing
from lambda_src.images import to_rgb

__all__ = ["eval_transform", "to_rgb"]


def eval_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side (with the manifest's filter), centre-crop, scale to [0, 1], normalise.

    The resize and crop run on the PIL image, as torchvision's and timm's own eval transforms
    do: Pillow's filters (its nearest neighbour included) give exactly their pixels. A
    1-channel model gets the picture in greyscale first (Pillow's convert("L"), what
    torchvision's Grayscale does to a PIL image).
    """
    greyscale = [v2.Grayscale(num_output_channels=1)] if preprocessing.channels == 1 else []
    return v2.Compose(
        [
            *greyscale,
            v2.Resize(
                preprocessing.resize,
                interpolation=InterpolationMode(preprocessing.interpolation),
                antialias=True,
            ),
            v2.CenterCrop(preprocessing.crop),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        ]
    )
