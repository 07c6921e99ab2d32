"""Reading the weights from S3 as parallel byte ranges: the same bytes, the same errors, one version."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from lambda_src import model_store
from lambda_src.errors import ArtifactNotFound, ModelArtifactError
from lambda_src.model_store import S3ModelStore

from .conftest import ModelBucket

PART = 64 * 1024  # small parts keep the test fast; the code is the same for 8 MiB
WEIGHTS = "ranged/m/v1/model.pt"


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_store, "PART_BYTES", PART)


def store_seeing_gets(bucket: ModelBucket, before_call: Callable[[str], None] | None = None):
    """A store on the moto bucket, and the headers of every GetObject it sends."""
    store = S3ModelStore(bucket.name, "ranged")
    sent: list[dict[str, str]] = []
    # The first part and small objects go through the store's client, the later parts
    # through its one-attempt part client: watch both.
    for client in (store.client, store.part_client):
        events = client.meta.events
        events.register("before-send.s3.GetObject", lambda request, **_: sent.append(dict(request.headers)))
        if before_call is not None:
            events.register(
                "before-call.s3.GetObject", lambda params, **_: before_call(params["headers"]["Range"])
            )
    return store, sent


@pytest.mark.parametrize(
    "size", [PART - 1, 3 * PART, 3 * PART + 123], ids=["under-a-part", "3-parts", "3-parts+rest"]
)
def test_weights_read_in_parts_are_the_object_byte_for_byte(
    model_bucket: ModelBucket, small_parts: None, size: int
) -> None:
    data = os.urandom(size)
    model_bucket.write(WEIGHTS, data)
    store, sent = store_seeing_gets(model_bucket)

    read = store.read(WEIGHTS)

    assert read == data and type(read) is bytes
    parts = -(-size // PART)
    ranges = sorted(_header(headers, "Range").decode() for headers in sent)
    assert len(sent) == parts
    # The first asks for a whole part, whatever the size; its answer tells the size for the rest.
    expected = [f"bytes=0-{PART - 1}"] + [
        f"bytes={start}-{min(start + PART, size) - 1}" for start in range(PART, size, PART)
    ]
    assert ranges == sorted(expected)


def test_the_parts_after_the_first_are_in_flight_together_and_only_from_the_first_parts_version(
    model_bucket: ModelBucket, small_parts: None
) -> None:
    model_bucket.write(WEIGHTS, os.urandom(5 * PART))
    etag = model_bucket.client.head_object(Bucket=model_bucket.name, Key=WEIGHTS)["ETag"]  # type: ignore[attr-defined]
    # Each of the 4 later parts waits in its call until all 4 are in one: read one by one, they never are.
    together = threading.Barrier(4, timeout=5)

    def wait_for_the_others(byte_range: str) -> None:
        if not byte_range.startswith("bytes=0-"):
            together.wait()

    store, sent = store_seeing_gets(model_bucket, wait_for_the_others)
    store.read(WEIGHTS)

    later = [headers for headers in sent if b"bytes=0-" not in _header(headers, "Range")]
    assert len(later) == 4
    assert all(_header(headers, "If-Match") == etag.encode() for headers in later)


def test_small_objects_are_one_plain_get(model_bucket: ModelBucket, small_parts: None) -> None:
    model_bucket.write("ranged/m/v1/manifest.json", b"x" * (3 * PART))
    store, sent = store_seeing_gets(model_bucket)
    assert store.read("ranged/m/v1/manifest.json") == b"x" * (3 * PART)
    assert len(sent) == 1 and "Range" not in sent[0]


def test_missing_weights_give_the_usual_not_found(model_bucket: ModelBucket, small_parts: None) -> None:
    store = S3ModelStore(model_bucket.name, "ranged")
    missing = "ranged/m/never-published/model.pt"
    with pytest.raises(
        ArtifactNotFound,
        match=rf"s3://{model_bucket.name}/{missing} does not exist or is not readable \(NoSuchKey\)",
    ):
        store.read(missing)


def test_weights_overwritten_mid_read_fail_instead_of_mixing_two_versions(
    model_bucket: ModelBucket, small_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One part at a time: moto closes an object's data when it is overwritten, which would
    # break the parts still streaming it (S3 keeps serving the old version to them).
    monkeypatch.setattr(model_store, "PARTS_IN_FLIGHT", 1)
    model_bucket.write(WEIGHTS, b"a" * (4 * PART))

    def overwrite_after_the_first_part(byte_range: str) -> None:
        if not byte_range.startswith("bytes=0-"):
            model_bucket.write(WEIGHTS, b"b" * (4 * PART))

    store, _ = store_seeing_gets(model_bucket, overwrite_after_the_first_part)
    with pytest.raises(
        ModelArtifactError, match=rf"cannot read s3://{model_bucket.name}/{WEIGHTS}: PreconditionFailed"
    ):
        store.read(WEIGHTS)


def _header(headers: dict[str, Any], name: str) -> bytes:
    value = headers.get(name, b"")
    return value if isinstance(value, bytes) else value.encode()


def test_the_later_parts_get_one_attempt_so_a_ranged_read_stays_within_its_bound() -> None:
    # Given a store that makes its own clients (as the function's does)
    store = S3ModelStore("bucket", "prefix")
    # Then the first part's client retries like every store call, the parts' client does not
    assert store.client.meta.config.retries["total_max_attempts"] == model_store.S3_MAX_ATTEMPTS
    assert store.part_client.meta.config.retries["total_max_attempts"] == 1
    # and the ranged read's worst case stays within Lambda's 10 s init
    assert model_store.RANGED_READ_BOUND_S <= 10
