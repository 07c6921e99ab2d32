"""Shared fixtures: one tiny trained model, a moto S3 bucket holding it, and a service serving it.

The expensive parts (training, loading) happen once per package. moto stays active
only while this package's tests run (package scope), so other test folders see
no mocked AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
import torch
from moto import mock_aws

from lambda_src.model_store import ModelLocation
from lambda_src.service import InferenceService
from lambda_src.settings import RuntimeSettings
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import Publication, publish, state_dict_bytes, train_tiny_model

BUCKET = "model-bucket-test"
PREFIX = "models"
MODEL_NAME = "colours"
VERSION = "v1"
# One torch thread: the test machine is shared, and more threads only fight over its cores.
TEST_SETTINGS = RuntimeSettings(torch_threads=1, model_retry_seconds=30)


@dataclass(frozen=True)
class ModelBucket:
    """The moto bucket and a way to publish more into it."""

    client: object
    name: str
    prefix: str

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)  # type: ignore[attr-defined]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)  # type: ignore[attr-defined]

    def location(self, model_name: str, version: str = "latest") -> ModelLocation:
        return ModelLocation(
            store_uri=f"s3://{self.name}/{self.prefix}", model_name=model_name, version=version
        )


@pytest.fixture(scope="package", autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Services set torch's (process-wide) thread count; give other test folders theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def tiny_model() -> torch.nn.Module:
    torch.set_num_threads(1)
    return train_tiny_model()


@pytest.fixture(scope="package")
def tiny_weights(tiny_model: torch.nn.Module) -> bytes:
    return state_dict_bytes(tiny_model)


@pytest.fixture(scope="package")
def model_bucket() -> Iterator[ModelBucket]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }.items():
            patch.setenv(name, value)
        # A custom endpoint would send boto3 past moto to a real server.
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        with mock_aws():
            client = boto3.client("s3", region_name="eu-west-1")
            client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            yield ModelBucket(client=client, name=BUCKET, prefix=PREFIX)


@pytest.fixture(scope="package")
def published(model_bucket: ModelBucket, tiny_weights: bytes) -> Publication:
    return publish(
        model_bucket.write, prefix=PREFIX, model_name=MODEL_NAME, version=VERSION, weights=tiny_weights
    )


@pytest.fixture(scope="package")
def telemetry() -> CapturedTelemetry:
    return CapturedTelemetry()


@pytest.fixture(scope="package")
def service(
    model_bucket: ModelBucket, published: Publication, telemetry: CapturedTelemetry
) -> InferenceService:
    """The healthy service every API test talks to (model loaded from moto S3 via LATEST)."""
    service = InferenceService(model_bucket.location(MODEL_NAME), settings=TEST_SETTINGS, telemetry=telemetry)
    assert service.load(), telemetry.logs("model load failed")
    return service


@pytest.fixture
def make_service(
    model_bucket: ModelBucket,
    published: Publication,
) -> Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]]:
    """A fresh, not yet loaded service for any model name, with a clock the test moves by hand."""

    def build(
        model_name: str, *, version: str = "latest", **settings_overrides: Any
    ) -> tuple[InferenceService, CapturedTelemetry, list[float]]:
        now = [1000.0]
        captured = CapturedTelemetry()
        settings = replace(TEST_SETTINGS, **settings_overrides)
        built = InferenceService(
            model_bucket.location(model_name, version),
            settings=settings,
            telemetry=captured,
            clock=lambda: now[0],
        )
        return built, captured, now

    return build
