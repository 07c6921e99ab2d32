"""What the benchmark serves: randomly initialised models published like real ones, and photos.

Random weights of the right shape cost exactly the same time as trained ones, and
need no download. They are published with the artifact contract of `lambda_src`
into a local folder store and into an S3 bucket (moto), so serving reads them
the way it reads any published model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import torch
import torchvision
from PIL import Image

from lambda_src.architectures import build_model
from lambda_src.artifact import Manifest, latest_key, manifest_key, sha256_hex, weights_key

NUM_CLASSES = 1000  # ImageNet-sized heads, so the models have their usual size
VERSION = "v1"
S3_PREFIX = "models"
# A real photograph (512x600 JPEG) that ships with matplotlib: no download needed.
PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
LARGE_PHOTO_SIZE = (3024, 4032)  # a 12-megapixel phone photo, portrait


@dataclass(frozen=True)
class PublishedModel:
    """One benchmark model: its architecture, its name in the stores and its weights file."""

    architecture: str
    model_name: str
    weights_path: Path  # the local store's copy, which the bare-script floor loads
    weights_size_bytes: int


def model_name_for(architecture: str) -> str:
    """bench-resnet18, bench-timm-resnet18.a1-in1k: a valid model name for any architecture."""
    return f"bench-{architecture.replace('_', '-').replace(':', '-')}"


def random_artifact(architecture: str) -> tuple[Manifest, bytes]:
    """A freshly initialised model's state dict bytes and the manifest that describes them."""
    torch.manual_seed(0)
    model = build_model(architecture, NUM_CLASSES)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    weights = buffer.getvalue()
    manifest = Manifest(
        model_name=model_name_for(architecture),
        version=VERSION,
        architecture=architecture,
        labels=tuple(f"class-{index:04d}" for index in range(NUM_CLASSES)),
        weights_sha256=sha256_hex(weights),
        weights_size_bytes=len(weights),
        framework={"torch": torch.__version__, "torchvision": torchvision.__version__},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return manifest, weights


def artifact_objects(manifest: Manifest, weights: bytes, prefix: str) -> dict[str, bytes]:
    """Every object of one published version, by key, laid out as the contract says."""
    name, version = manifest.model_name, manifest.version
    return {
        weights_key(prefix, name, version): weights,
        manifest_key(prefix, name, version): manifest.to_json(),
        latest_key(prefix, name): version.encode("utf-8"),
    }


def publish(architecture: str, local_root: Path, s3_client: object, bucket: str) -> PublishedModel:
    """Publish one random-weight model to the local store and to `s3://bucket/S3_PREFIX`."""
    manifest, weights = random_artifact(architecture)
    for key, data in artifact_objects(manifest, weights, prefix="").items():
        path = local_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for key, data in artifact_objects(manifest, weights, prefix=S3_PREFIX).items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)  # type: ignore[attr-defined]
    return PublishedModel(
        architecture=architecture,
        model_name=manifest.model_name,
        weights_path=local_root / weights_key("", manifest.model_name, VERSION),
        weights_size_bytes=len(weights),
    )


def photo_jpeg() -> bytes:
    """The sample photograph's original JPEG bytes."""
    return PHOTO.read_bytes()


def large_photo_jpeg() -> bytes:
    """The sample photograph enlarged to a phone camera's 12 megapixels, as a JPEG (quality 90)."""
    with Image.open(PHOTO) as photo:
        large = photo.convert("RGB").resize(LARGE_PHOTO_SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
