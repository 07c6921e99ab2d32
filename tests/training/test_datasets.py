"""Validation sees each image exactly as the endpoint would feed it to the model."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from lambda_src.artifact import Preprocessing
from lambda_src.classifier import ModelInput
from lambda_src.preprocessing import eval_transform, to_rgb
from model_training.datasets import LabelledImages, train_and_val_datasets

PREPROCESSING = Preprocessing(resize=40, crop=32)


def photo(path: Path, side: int, seed: int) -> Path:
    """A noisy JPEG large enough that serving decodes it at a reduced scale."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (side, side, 3), generator=generator, dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(path, format="JPEG", quality=90)
    return path


def test_validation_inputs_are_the_served_inputs_including_reduced_scale_jpeg_decoding(
    tmp_path: Path,
) -> None:
    # Given an image folder of large JPEGs, split so every class has a validation image
    paths = [photo(tmp_path / f"{index}.jpg", 400, index) for index in range(4)]
    data = LabelledImages(
        samples=tuple((path, index % 2) for index, path in enumerate(paths)), labels=("a", "b")
    )
    _, validation = train_and_val_datasets(data, PREPROCESSING, val_fraction=0.5, seed=0)
    served = ModelInput(PREPROCESSING, max_pixels=10_000_000)
    # Then each validation tensor is what the endpoint's input verb makes of the file's bytes
    for index, (source, label) in enumerate(validation.samples):
        tensor, got_label = validation[index]
        assert got_label == label
        assert torch.equal(tensor, served(Path(source).read_bytes()))
        # and not what a full-resolution decode gives: the reduced-scale decode really is used
        with Image.open(io.BytesIO(Path(source).read_bytes())) as image:
            full = eval_transform(PREPROCESSING)(to_rgb(image))
        assert not torch.equal(tensor, full)
