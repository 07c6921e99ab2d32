"""Every store call and every load ends within its total bound, whatever the store does.

Real sockets: moto's server behind a proxy on 127.0.0.1 that answers and then drips its body a
byte a second, drips its headers, or stops answering after the first part of the weights (a
byte a second never trips the per-read timeout: only a total bound ends these).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from lambda_src.artifact import weights_key
from lambda_src.errors import IntegrityError, ModelArtifactError
from lambda_src.model_store import (
    LOAD_READ_BOUND_S,
    MODEL_READ_BOUND_S,
    RANGED_READ_BOUND_S,
    STORE_CALL_BOUND_S,
    LocalModelStore,
    ModelLocation,
    S3ModelStore,
)
from lambda_src.prefetch import PrefetchingStore
from lambda_src.service import InferenceService
from tests.support.events import api_gateway_event, body_of
from tests.support.faulty_store import (
    FAKE_CREDENTIALS,
    Fault,
    FaultRule,
    FaultyStore,
    every_get_of,
    faulty_store,
    weights_parts_after_the_first,
)
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import make_manifest, publish

from .conftest import MODEL_NAME, TEST_SETTINGS

BUCKET = "model-bucket"
PREFIX = "models"
SLACK_S = 2.5  # thread start-up on a busy shared machine: the bound is what is asserted, not this
BIG_WEIGHTS = os.urandom(17 * 1024 * 1024)  # three 8 MiB parts: the first, then two in flight
HEALTH = api_gateway_event("GET", "/health")


@pytest.fixture
def store_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials, and boto3's default session forgotten (it keeps what it resolved)."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    yield


@contextmanager
def _serve(rule: FaultRule, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyStore]:
    with faulty_store(rule, bucket=BUCKET) as store:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", store.url)

        def write(key: str, data: bytes) -> None:
            store.client.put_object(Bucket=BUCKET, Key=key, Body=data)

        publish(
            write,
            prefix=PREFIX,
            model_name=MODEL_NAME,
            version="v1",
            weights=BIG_WEIGHTS,
            manifest=make_manifest(MODEL_NAME, "v1", BIG_WEIGHTS),
        )
        yield store


FAULTS = {
    "answers then drips the weights": every_get_of("/model.pt", Fault.DRIP_BODY),
    "answers then drips the manifest": every_get_of("/manifest.json", Fault.DRIP_BODY),
    "drips the headers of the manifest": every_get_of("/manifest.json", Fault.DRIP_HEADERS),
    "stalls after the first part of the weights": weights_parts_after_the_first(Fault.STALL),
    "drips the parts after the first": weights_parts_after_the_first(Fault.DRIP_BODY),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_a_load_from_a_faulty_store_answers_503_within_the_bound(
    fault: str, store_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _serve(FAULTS[fault], monkeypatch) as store:
        # Given a service on a store with this fault
        service = InferenceService(
            ModelLocation(f"s3://{BUCKET}/{PREFIX}", MODEL_NAME),
            settings=TEST_SETTINGS,
            telemetry=CapturedTelemetry(),
        )
        # When it loads, and a request comes
        started = time.monotonic()
        assert not service.load()
        load_s = time.monotonic() - started
        answer = service.handle(HEALTH)
        # Then the load gave up within the bound on a load's reads, and the request got a 503
        assert load_s <= LOAD_READ_BOUND_S + SLACK_S, load_s
        assert answer["statusCode"] == 503
        assert body_of(answer)["error"]["reason"] == "store_unreadable"
        assert store.url not in answer["body"]


@pytest.mark.parametrize(
    ("fault", "bound_s"),
    [
        ("answers then drips the manifest", STORE_CALL_BOUND_S),
        ("drips the headers of the manifest", STORE_CALL_BOUND_S),
        ("answers then drips the weights", RANGED_READ_BOUND_S),
        ("stalls after the first part of the weights", RANGED_READ_BOUND_S),
    ],
)
def test_each_s3_call_ends_within_its_own_total_bound(
    fault: str, bound_s: float, store_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _serve(FAULTS[fault], monkeypatch):
        store = S3ModelStore(BUCKET, PREFIX)
        key = {
            "answers then drips the manifest": f"{PREFIX}/{MODEL_NAME}/v1/manifest.json",
            "drips the headers of the manifest": f"{PREFIX}/{MODEL_NAME}/v1/manifest.json",
        }.get(fault, weights_key(PREFIX, MODEL_NAME, "v1"))
        started = time.monotonic()
        with pytest.raises(ModelArtifactError, match="cannot read") as raised:
            store.read(key)
        elapsed = time.monotonic() - started
        assert elapsed <= bound_s + SLACK_S, elapsed
        if fault != "stalls after the first part of the weights":  # silence trips the read timeout
            # a trickle never does: only the total bound ended it
            assert f"did not answer within {bound_s:g} s" in str(raised.value)
            assert elapsed >= bound_s


def test_the_prefetch_is_never_waited_on_past_its_bound(
    store_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _serve(FAULTS["answers then drips the weights"], monkeypatch) as store:
        # Given the handler's prefetch, started on a store that drips the weights
        location = ModelLocation(f"s3://{BUCKET}/{PREFIX}", MODEL_NAME)
        started = time.monotonic()
        prefetching = PrefetchingStore.for_s3(location)
        assert prefetching is not None
        # When the loader asks it for the weights
        with pytest.raises(ModelArtifactError, match="did not answer within"):
            prefetching.read(weights_key(PREFIX, MODEL_NAME, "v1"))
        # Then it answered by the prefetch's bound, counted from its start
        assert time.monotonic() - started <= MODEL_READ_BOUND_S + SLACK_S
        assert any(request.path.endswith("/model.pt") for request in store.requests)


def test_weights_of_the_wrong_size_are_refused_before_their_bytes_are_read_from_s3(
    store_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _serve(lambda request: None, monkeypatch) as faulty:
        # Given a model.pt replaced by a bigger object than its manifest records
        key = weights_key(PREFIX, MODEL_NAME, "v1")
        faulty.client.put_object(Bucket=BUCKET, Key=key, Body=BIG_WEIGHTS + BIG_WEIGHTS)
        store = S3ModelStore(BUCKET, PREFIX)
        faulty.requests.clear()
        # When the loader reads it with the manifest's size
        with pytest.raises(IntegrityError, match=f"is {2 * len(BIG_WEIGHTS)} bytes but the manifest says"):
            store.read(key, size=len(BIG_WEIGHTS))
        # Then only the first part was asked for: the size it answered with was enough to refuse
        assert [request.byte_range_start() for request in faulty.requests] == [0]


def test_a_replaced_2_gib_model_pt_is_refused_without_reading_it(tmp_path: Path) -> None:
    # Given a local store whose model.pt is now a 2 GiB file (sparse: it costs no disk)
    key = weights_key("", MODEL_NAME, "v1")
    path = tmp_path / key
    path.parent.mkdir(parents=True)
    with path.open("wb") as file:
        file.truncate(2 * 1024**3)
    # When it is read with the manifest's size
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="is 2147483648 bytes but the manifest says 1000"):
            LocalModelStore(tmp_path).read(key, size=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Then not a byte of it was read into memory
    assert peak < 1024 * 1024, peak


def test_a_manifest_or_pointer_over_a_megabyte_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / MODEL_NAME / "LATEST"
    path.parent.mkdir()
    path.write_bytes(b"v" * (2 * 1024 * 1024))
    with pytest.raises(ModelArtifactError, match="more than a pointer or manifest ever is"):
        LocalModelStore(tmp_path).read(f"{MODEL_NAME}/LATEST")
