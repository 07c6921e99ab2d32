"""Training data: an ImageFolder-layout directory or the demo set, split and transformed.

Validation images go through the endpoint's own input verb
(`lambda_src.classifier.ModelInput`: the same decoder, reduced-scale JPEG decoding
included, the same limits and preprocessing), so the reported accuracy is the
served model's. Only the formats the endpoint accepts (JPEG, PNG, WebP) are used.
Training images get light augmentation built around the same normalisation.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from lambda_src.artifact import Preprocessing
from lambda_src.classifier import ModelInput
from lambda_src.errors import ApiError
from lambda_src.images import open_image
from lambda_src.preprocessing import to_rgb
from lambda_src.settings import RuntimeSettings
from model_training.demo_data import DEMO_CLASSES, demo_images

ImageSource = Image.Image | Path  # an image in memory (demo) or a file (image folder)


class TrainingDataError(Exception):
    """The training data cannot be used (missing, empty, unreadable, a single class...)."""


@dataclass(frozen=True)
class LabelledImages:
    """Images with their class index, and the class names those indices refer to."""

    samples: tuple[tuple[ImageSource, int], ...]
    labels: tuple[str, ...]


def open_rgb(source: ImageSource) -> Image.Image:
    """The image as upright RGB, with a readable error naming the file when it is broken."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    try:
        with Image.open(source) as image:
            image.load()
            return to_rgb(image)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise TrainingDataError(f"cannot read image {source}: {error}") from None


def _check_readable(path: Path) -> None:
    """Check the header and structure only: catches non-images and formats the endpoint refuses early."""
    try:
        with open_image(path.read_bytes(), "the file") as image:
            image.verify()
    except ApiError as error:
        raise TrainingDataError(
            f"cannot read image {path}: {error.message} (the endpoint takes JPEG, PNG and WebP only, "
            "so training does too)"
        ) from None
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise TrainingDataError(f"cannot read image {path}: {error}") from None


def encoded(source: ImageSource) -> bytes:
    """The image's file bytes; in-memory images (the demo set) as PNG, which is lossless."""
    if isinstance(source, Path):
        try:
            return source.read_bytes()
        except OSError as error:
            raise TrainingDataError(f"cannot read image {source}: {error.strerror}") from None
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    return buffer.getvalue()


def load_image_folder(root: Path) -> LabelledImages:
    """Class folders under `root` (ImageFolder layout: root/<class>/<image>), checked for use."""
    if not root.exists():
        raise TrainingDataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise TrainingDataError(f"{root} is not a folder: give a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples: list[tuple[ImageSource, int]] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            continue
        for path in files:
            _check_readable(path)
            samples.append((path, len(labels)))
        labels.append(class_dir.name)
    if not labels:
        raise TrainingDataError(
            f"no images found in {root}: expected one sub-folder per class with images inside "
            f"(root/<class>/<image>; extensions {', '.join(IMG_EXTENSIONS)})"
        )
    if len(labels) == 1:
        raise TrainingDataError(
            f"only one class ({labels[0]!r}) has images in {root}: a classifier needs at least two "
            "class folders with images"
        )
    return LabelledImages(samples=tuple(samples), labels=tuple(labels))


def load_demo_set(images_per_class: int, seed: int) -> LabelledImages:
    """The synthetic shapes set, reproducible from `seed`."""
    return LabelledImages(samples=tuple(demo_images(images_per_class, seed)), labels=DEMO_CLASSES)


def split(data: LabelledImages, val_fraction: float, seed: int) -> tuple[list, list]:
    """Stratified train/validation split: every class keeps images on both sides."""
    if not 0 < val_fraction < 1:
        raise TrainingDataError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)  # noqa: S311 - a reproducible split, not a secret
    train: list[tuple[ImageSource, int]] = []
    val: list[tuple[ImageSource, int]] = []
    for index, label in enumerate(data.labels):
        members = [sample for sample in data.samples if sample[1] == index]
        if len(members) < 2:
            raise TrainingDataError(
                f"class {label!r} has {len(members)} image(s): each class needs at least 2 "
                "(one to train on, one to validate with)"
            )
        rng.shuffle(members)
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return train, val


def train_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """Light augmentation that ends in the same size and normalisation as `eval_transform`."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(preprocessing.crop, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        ]
    )


class TransformedImages(Dataset):
    """(tensor, class index) pairs for training: opens each image as RGB, then applies `transform`."""

    def __init__(
        self,
        samples: Sequence[tuple[ImageSource, int]],
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        source, label = self.samples[index]
        return self.transform(open_rgb(source)), label


class ServedImages(Dataset):
    """(tensor, class index) pairs for validation: each image's bytes through the endpoint's input verb."""

    def __init__(self, samples: Sequence[tuple[ImageSource, int]], preprocessing: Preprocessing) -> None:
        self.samples = list(samples)
        self.model_input = ModelInput(preprocessing, max_pixels=RuntimeSettings().max_image_pixels)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        source, label = self.samples[index]
        what = f"image {source}" if isinstance(source, Path) else f"validation image {index}"
        try:
            return self.model_input(encoded(source), what=what), label
        except ApiError as error:
            raise TrainingDataError(f"cannot use {error.message}") from None


def train_and_val_datasets(
    data: LabelledImages, preprocessing: Preprocessing, val_fraction: float, seed: int
) -> tuple[TransformedImages, ServedImages]:
    train, val = split(data, val_fraction, seed)
    return TransformedImages(train, train_transform(preprocessing)), ServedImages(val, preprocessing)
