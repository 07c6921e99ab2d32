"""Shared fixtures: fake AWS settings, moto S3, and small real training runs.

Training is the expensive part: the full demo run (resnet18, ~400 steps) happens
once per session, and the tiny runs used by the publishing tests take a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from model_training.training import TrainingConfig, TrainingResult, save_output, train

REGION = "eu-west-1"
BUCKET = "model-bucket-training-tests"
PREFIX = "models"
MODEL_NAME = "demo-shapes"


def quiet(_: str) -> None:
    """A `note` callback that drops training's informational lines."""


def tiny_config(**overrides: Any) -> TrainingConfig:
    """A couple of optimiser steps on a few demo images: real training, about a second."""
    settings: dict[str, Any] = {
        "architecture": "mobilenet_v3_small",
        "demo_images_per_class": 6,
        "image_size": 32,
        "batch_size": 8,
        "epochs": 1,
        "max_steps": 2,
        **overrides,
    }
    return TrainingConfig(**settings)


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no custom endpoints or profiles: nothing can reach real AWS."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@dataclass(frozen=True)
class Bucket:
    client: Any
    name: str

    @property
    def store_uri(self) -> str:
        return f"s3://{self.name}/{PREFIX}"

    def keys(self) -> list[str]:
        return sorted(
            item["Key"] for item in self.client.list_objects_v2(Bucket=self.name).get("Contents", [])
        )

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    """An empty, versioned moto bucket (like the stack's)."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield Bucket(client=client, name=BUCKET)


@pytest.fixture(scope="session")
def tiny_result() -> TrainingResult:
    return train(tiny_config(), progress=False, note=quiet)


@pytest.fixture(scope="session")
def tiny_output(tmp_path_factory: pytest.TempPathFactory, tiny_result: TrainingResult) -> Path:
    """A training output folder (model.pt + manifest.json) of a tiny real model."""
    return save_output(tiny_result, tmp_path_factory.mktemp("tiny-output"))


@pytest.fixture(scope="session")
def demo_result() -> TrainingResult:
    """The real demo run: resnet18 with the default demo settings (the suite's most expensive fixture)."""
    return train(TrainingConfig(), progress=False, note=quiet)
