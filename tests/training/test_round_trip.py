"""Training for real, then loading what was published through the serving side's loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lambda_src.classifier import ImageClassifier
from lambda_src.loader import LoadedModel, load_model
from lambda_src.model_store import ModelLocation
from lambda_src.preprocessing import eval_transform, to_rgb
from model_training.demo_data import DEMO_CLASSES, write_examples
from model_training.publishing import publish
from model_training.training import TrainingResult, save_output, train

from .conftest import MODEL_NAME, Bucket, quiet, tiny_config


def example_images(folder: Path, per_class: int) -> tuple[list[Path], list[int]]:
    """Unseen demo images saved as PNG files (what a client sends) and their true classes."""
    paths = write_examples(folder, per_class=per_class, image_format="png")
    return paths, [DEMO_CLASSES.index(path.name.split("-")[0]) for path in paths]


def in_memory_classes(result: TrainingResult, images: list[Path]) -> list[int]:
    transform = eval_transform(result.manifest.preprocessing)
    pictures = [to_rgb(Image.open(path)) for path in images]
    with torch.inference_mode():
        return result.model(torch.stack([transform(picture) for picture in pictures])).argmax(dim=1).tolist()


def served_classes(location: ModelLocation, images: list[Path]) -> tuple[list[int], LoadedModel]:
    # Keep this process's thread count: the loader would otherwise set it for every test after this one.
    loaded = load_model(location, torch_threads=torch.get_num_threads())
    classifier = ImageClassifier(loaded, max_image_pixels=10_000_000)
    inputs = [classifier.input(path.read_bytes()) for path in images]
    ranked = classifier.predict(inputs, top_k=1)
    return [predictions[0].index for predictions in ranked], loaded


@pytest.mark.slow
def test_the_demo_set_trains_resnet18_to_95_percent(demo_result: TrainingResult) -> None:
    # Given the default demo settings (resnet18, generated shapes), trained once per session
    # Then the validation accuracy reported in the manifest is at least 95%
    assert demo_result.manifest.architecture == "resnet18"
    assert demo_result.manifest.labels == DEMO_CLASSES
    assert demo_result.manifest.metrics["val_images"] >= 400
    assert demo_result.val_accuracy >= 0.95, demo_result.history


@pytest.mark.slow
def test_the_published_demo_model_round_trips_through_the_loader(
    demo_result: TrainingResult, tmp_path: Path
) -> None:
    # Given the trained demo model, written and published to a local model store
    store = tmp_path / "store"
    published = publish(save_output(demo_result, tmp_path / "output"), str(store), progress=False)
    images, truth = example_images(tmp_path / "examples", per_class=5)

    # When the serving side's loader loads it (LATEST -> manifest -> verified weights)
    served, loaded = served_classes(ModelLocation(str(store), MODEL_NAME), images)

    # Then it is the same model: same hash, labels, preprocessing, and the same predicted classes
    assert loaded.manifest.version == published.version == "v1"
    assert loaded.manifest.weights_sha256 == demo_result.manifest.weights_sha256
    assert loaded.manifest.preprocessing == demo_result.manifest.preprocessing
    assert served == in_memory_classes(demo_result, images)
    # and those classes are right on images it never saw
    correct = sum(s == t for s, t in zip(served, truth, strict=True))
    assert correct >= 18, (served, truth)


@pytest.mark.parametrize("architecture", ["mobilenet_v3_small", "efficientnet_b0", "resnet18"])
def test_each_architecture_trains_publishes_to_s3_and_round_trips(
    architecture: str, bucket: Bucket, tmp_path: Path
) -> None:
    # Given a couple of real training steps of the architecture
    result = train(tiny_config(architecture=architecture), progress=False, note=quiet)
    assert len(result.history) == 1
    # When it is published to (moto) S3 and loaded back by the serving side from there
    publish(save_output(result, tmp_path), bucket.store_uri, progress=False)
    images, _ = example_images(tmp_path / "examples", per_class=2)
    served, loaded = served_classes(ModelLocation(bucket.store_uri, MODEL_NAME), images)
    # Then the loader accepts it and predicts what the in-memory model predicts
    assert loaded.manifest.architecture == architecture
    assert served == in_memory_classes(result, images)


def test_training_is_deterministic_for_a_seed() -> None:
    # Given two runs with the same seed and one with another
    first = train(tiny_config(seed=3), progress=False, note=quiet)
    second = train(tiny_config(seed=3), progress=False, note=quiet)
    other = train(tiny_config(seed=4), progress=False, note=quiet)
    # Then the same seed gives the same weights, another seed different ones
    assert first.manifest.weights_sha256 == second.manifest.weights_sha256
    assert first.manifest.weights_sha256 != other.manifest.weights_sha256
