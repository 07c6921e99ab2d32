"""The batch function fed exactly what Step Functions sends it, against moto S3.

Given a bucket of good and broken images and the tiny model published in moto,
when the Distributed Map's events arrive (the job's version resolution, then batches of
`Items` from the S3 listing reader with the job's `BatchInput`), then every image gets one
line, broken ones get their error, and the model is loaded once for the environment.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from lambda_src.batch import MAX_IMAGE_BYTES
from lambda_src.contract import BATCH_HANDLER
from tests.support.images import coloured_image, encode
from tests.support.tiny_model import Publication, publish

from .conftest import MODEL_NAME, PREFIX, VERSION, ModelBucket

REPO_ROOT = Path(__file__).resolve().parents[2]
INPUT_BUCKET = "batch-input-test"
GOOD = {
    "photos/red-1.png": encode(coloured_image("red", seed=1), "PNG"),
    "photos/green-1.jpg": encode(coloured_image("green", seed=2), "JPEG"),
    "photos/blue-1.webp": encode(coloured_image("blue", seed=3), "WEBP"),
}
BROKEN = {
    "photos/truncated.png": encode(coloured_image("red", seed=4), "PNG")[:60],
    "photos/notes.txt": b"not an image at all",
    "photos/anim.gif": encode(coloured_image("blue", seed=5), "GIF"),
}
EXPECTED_CODES = {
    "photos/truncated.png": "bad_request",
    "photos/notes.txt": "bad_request",
    "photos/anim.gif": "unsupported_media_type",
    "photos/missing.png": "not_found",
}


def listing_item(key: str, size: int) -> dict[str, Any]:
    """One item as the S3 ListObjectsV2 item reader produces it."""
    return {
        "Etag": '"0c8f3d5e9b0f4a8d"',
        "Key": key,
        "LastModified": 1732000000,
        "Size": size,
        "StorageClass": "STANDARD",
    }


@pytest.fixture(scope="module")
def input_bucket(model_bucket: ModelBucket) -> str:
    client: Any = model_bucket.client
    client.create_bucket(Bucket=INPUT_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for key, data in {**GOOD, **BROKEN}.items():
        client.put_object(Bucket=INPUT_BUCKET, Key=key, Body=data)
    return INPUT_BUCKET


@pytest.fixture(scope="module")
def batch_handler(published: Publication, model_bucket: ModelBucket) -> Iterator[ModuleType]:
    """The handler module imported as Lambda imports it, with the stack's environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_STORE", f"s3://{model_bucket.name}/{PREFIX}")
        patch.setenv("MODEL_NAME", MODEL_NAME)
        patch.setenv("TORCH_NUM_THREADS", "1")
        sys.modules.pop("lambda_src.batch_handler", None)
        yield importlib.import_module("lambda_src.batch_handler")
        sys.modules.pop("lambda_src.batch_handler", None)


def test_the_batch_cmd_names_this_handler(batch_handler: ModuleType) -> None:
    module_name, _, function_name = BATCH_HANDLER.rpartition(".")

    assert module_name == batch_handler.__name__
    function = getattr(batch_handler, function_name)
    assert list(inspect.signature(function).parameters) == ["event", "context"]


def test_a_job_resolves_latest_to_the_published_version_once(batch_handler: ModuleType) -> None:
    answer = batch_handler.lambda_handler({"resolve_model_version": "latest"}, None)

    assert answer == {"name": MODEL_NAME, "version": VERSION}
    assert batch_handler.worker.models.loads == 0  # resolving reads only the LATEST pointer


def test_every_image_gets_one_line_and_broken_ones_their_error(
    batch_handler: ModuleType, input_bucket: str
) -> None:
    images = {**GOOD, **BROKEN}
    items = [listing_item(key, len(data)) for key, data in images.items()]
    items += [listing_item("photos/", 0), listing_item("photos/missing.png", 10)]
    batch_input = {"bucket": input_bucket, "model_version": VERSION, "top_k": 2}

    first = batch_handler.lambda_handler({"Items": items[:4], "BatchInput": batch_input}, None)
    second = batch_handler.lambda_handler({"Items": items[4:], "BatchInput": batch_input}, None)
    lines = first + second

    schema = json.loads((REPO_ROOT / "docs" / "batch-result.schema.json").read_text())
    for line in lines:
        jsonschema.validate(json.loads(json.dumps(line)), schema)  # what Step Functions writes
    by_key = {line["key"]: line for line in lines}
    assert sorted(by_key) == sorted([*images, "photos/missing.png"])  # the folder marker is no image
    assert len(lines) == len(by_key)
    for key in GOOD:
        predictions = by_key[key]["predictions"]
        assert len(predictions) == 2
        assert predictions[0]["label"] == key.split("/")[1].split("-")[0]
        assert predictions[0]["score"] >= predictions[1]["score"]
        assert "error" not in by_key[key]
    for key, code in EXPECTED_CODES.items():
        assert by_key[key]["error"]["code"] == code, by_key[key]
        assert key in by_key[key]["error"]["message"]
        assert "predictions" not in by_key[key]
    assert {line["model"]["version"] for line in lines} == {VERSION}
    assert batch_handler.worker.models.loads == 1  # two batches, one load for the environment


class InvocationContext:
    """The part of Lambda's context object the handler reads: the invocation's time left."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_batch_reads_images_only_within_its_invocations_time(
    batch_handler: ModuleType, input_bucket: str
) -> None:
    items = [listing_item(key, len(data)) for key, data in GOOD.items()]
    batch_input = {"bucket": input_bucket, "model_version": VERSION}
    event = {"Items": items, "BatchInput": batch_input}
    # With time to spare every image is classified
    roomy = batch_handler.lambda_handler(event, InvocationContext(60_000))
    assert all("predictions" in line for line in roomy)
    # With less time left than the last forward pass and the reply need, none is read, each says why
    short = batch_handler.lambda_handler(event, InvocationContext(2_000))
    assert [line["key"] for line in short] == list(GOOD)
    for line in short:
        assert line["error"]["code"] == "read_failed"
        assert "ran out" in line["error"]["message"]


def test_an_image_over_the_size_limit_is_refused_before_it_is_read(
    batch_handler: ModuleType, input_bucket: str, model_bucket: ModelBucket
) -> None:
    model_bucket.client.put_object(  # type: ignore[attr-defined]
        Bucket=input_bucket, Key="huge/big.png", Body=b"\x89PNG" + bytes(MAX_IMAGE_BYTES)
    )
    event = {
        "Items": [listing_item("huge/big.png", MAX_IMAGE_BYTES + 4)],
        "BatchInput": {"bucket": input_bucket, "model_version": VERSION},
    }

    [line] = batch_handler.lambda_handler(event, None)

    assert line["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"Items": ["a.png"], "BatchInput": {"bucket": "b", "model_version": "latest"}}, "job start"),
        ({"Items": ["a.png"], "BatchInput": {"model_version": VERSION}}, "bucket"),
        ({"Items": [{"Size": 3}], "BatchInput": {"bucket": "b", "model_version": VERSION}}, "no object key"),
        ({"Records": []}, "expected a Distributed Map batch"),
    ],
)
def test_a_malformed_event_fails_the_batch_with_a_clear_reason(
    batch_handler: ModuleType, event: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        batch_handler.lambda_handler(event, None)


def test_items_from_csv_and_json_manifests_name_their_keys(
    batch_handler: ModuleType, input_bucket: str
) -> None:
    key = "photos/red-1.png"
    batch_input = {"bucket": input_bucket, "model_version": VERSION, "top_k": 1}

    from_csv = batch_handler.lambda_handler({"Items": [{"key": key}], "BatchInput": batch_input}, None)
    from_json = batch_handler.lambda_handler({"Items": [key], "BatchInput": batch_input}, None)

    assert from_csv == from_json
    assert from_csv[0]["predictions"][0]["label"] == "red"


def test_a_job_with_another_version_gets_that_version_in_every_line(
    batch_handler: ModuleType, input_bucket: str, model_bucket: ModelBucket, published: Publication
) -> None:
    publish(
        model_bucket.write,
        prefix=PREFIX,
        model_name=MODEL_NAME,
        version="v1-retrained",
        weights=published.weights,
        point_latest=False,  # other tests in this package keep serving v1
    )
    loads_before = batch_handler.worker.models.loads
    batch_input = {"bucket": input_bucket, "model_version": "v1-retrained"}

    lines = batch_handler.lambda_handler({"Items": list(GOOD), "BatchInput": batch_input}, None)
    again = batch_handler.lambda_handler({"Items": list(GOOD), "BatchInput": batch_input}, None)

    assert {line["model"]["version"] for line in lines + again} == {"v1-retrained"}
    assert batch_handler.worker.models.loads == loads_before + 1


@pytest.mark.slow
def test_a_fresh_batch_environment_imports_the_handler_and_resolves_a_job(
    tmp_path: Path, tiny_weights: bytes
) -> None:
    def write(key: str, data: bytes) -> None:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)

    publish(write, prefix="", model_name=MODEL_NAME, version=VERSION, weights=tiny_weights)
    script = (
        "import json, sys, lambda_src.batch_handler as handler; "
        "print(json.dumps(handler.lambda_handler({'resolve_model_version': 'latest'}, None))); "
        "print('torch._dynamo' in sys.modules)"
    )
    env = {
        **os.environ,
        "MODEL_STORE": str(tmp_path),
        "MODEL_NAME": MODEL_NAME,
        "AWS_DEFAULT_REGION": "eu-west-1",
    }

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    answer, dynamo_imported = done.stdout.strip().splitlines()[-2:]
    assert json.loads(answer) == {"name": MODEL_NAME, "version": VERSION}
    assert dynamo_imported == "False"  # the same lean imports as the API's handler
