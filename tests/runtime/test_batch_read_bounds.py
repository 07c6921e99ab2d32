"""A batch's image reads end within their total bounds, whatever the input bucket does.

Real sockets: moto's server behind a proxy on 127.0.0.1 that answers some images' GETs and then
drips their bodies a byte a second (no per-read timeout ever trips). Each such image gets its
`read_failed` line within the store call's bound; the rest of the batch is classified; and no
read outlasts the batch's time for reading, so the invocation answers before its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from lambda_src.batch import (
    READ_RESERVE_MIN_S,
    BatchWorker,
    ModelCache,
    S3Images,
    reading_deadline,
)
from lambda_src.deadlines import Deadline
from lambda_src.model_store import STORE_CALL_BOUND_S, bounded_s3_client
from tests.support.faulty_store import FAKE_CREDENTIALS, Fault, FaultyStore, Request, faulty_store
from tests.support.images import coloured_image, encode
from tests.support.tiny_model import publish

from .conftest import MODEL_NAME, TEST_SETTINGS

INPUT_BUCKET = "batch-input"
SLACK_S = 2.5  # thread start-up on a busy shared machine: the bound is what is asserted, not this
GOOD = {f"photos/good-{n}.png": encode(coloured_image("red", seed=n), "PNG") for n in range(2)}
DRIPPING = {f"photos/drip-{n}.jpg": encode(coloured_image("blue", seed=n), "JPEG") for n in range(6)}


def drips_images(request: Request) -> Fault | None:
    return Fault.DRIP_BODY if request.method == "GET" and "/photos/drip-" in request.path else None


@pytest.fixture
def input_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyStore]:
    """The input bucket behind the dripping proxy; boto3 pointed at the proxy with fake credentials."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with faulty_store(drips_images, bucket=INPUT_BUCKET) as store:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", store.url)
        for key, data in {**GOOD, **DRIPPING}.items():
            store.client.put_object(Bucket=INPUT_BUCKET, Key=key, Body=data)
        yield store


@pytest.fixture
def worker(tmp_path: Path, tiny_weights: bytes) -> BatchWorker:
    """The batch worker over the tiny model, published in a local store."""

    def write(key: str, data: bytes) -> None:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)

    publish(write, prefix="", model_name=MODEL_NAME, version="v1", weights=tiny_weights)
    return BatchWorker(ModelCache(str(tmp_path), MODEL_NAME, settings=TEST_SETTINGS))


def test_a_dripping_image_gets_its_error_line_within_the_store_calls_bound(
    input_store: FaultyStore, worker: BatchWorker
) -> None:
    keys = [*GOOD, "photos/drip-0.jpg"]
    worker.models.classifier("v1")  # loaded first: what is timed is the batch's reads
    started = time.monotonic()
    lines = worker.classify(S3Images(INPUT_BUCKET, bounded_s3_client()), keys, version="v1")
    elapsed = time.monotonic() - started
    assert elapsed <= STORE_CALL_BOUND_S + SLACK_S
    assert [line["key"] for line in lines] == keys
    assert all("predictions" in line for line in lines[:2])
    dripped = lines[2]
    assert "predictions" not in dripped
    assert dripped["error"]["code"] == "read_failed"
    assert f"did not answer within {STORE_CALL_BOUND_S:g} s" in dripped["error"]["message"]
    assert input_store.url not in dripped["error"]["message"]


def test_no_read_outlasts_the_batchs_time_for_reading(input_store: FaultyStore, worker: BatchWorker) -> None:
    # Given a batch whose reads must end within 3 s, with six images that drip (more than the
    # reading threads: later ones would start after the first ones' bound)
    keys = [*DRIPPING, *GOOD]
    worker.models.classifier("v1")
    reading_s = 3.0
    started = time.monotonic()
    lines = worker.classify(
        S3Images(INPUT_BUCKET, bounded_s3_client(), Deadline(reading_s)), keys, version="v1"
    )
    elapsed = time.monotonic() - started
    # Then the whole batch answers within that time, not within six (or two rounds of) store bounds
    assert elapsed <= reading_s + SLACK_S, elapsed
    assert [line["key"] for line in lines] == keys
    assert {line["error"]["code"] for line in lines[:6]} == {"read_failed"}
    # and the good images read after the deadline say why they were not classified
    for line in lines[6:]:
        assert line["error"]["code"] == "read_failed"
        assert "ran out" in line["error"]["message"] or "did not answer" in line["error"]["message"]


def test_the_time_for_reading_leaves_the_last_forward_pass_and_the_reply_their_share() -> None:
    assert reading_deadline(120).seconds == pytest.approx(96)  # a fifth held back
    assert reading_deadline(10).seconds == pytest.approx(10 - READ_RESERVE_MIN_S)  # at least this
    assert reading_deadline(2).seconds == 0  # nothing left to read in
