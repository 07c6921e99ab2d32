"""SnapStart's runtime hooks in process: what the snapshot holds, and what each restore makes anew.

The same hooks under AWS's runtime client and the Runtime API's restore lifecycle:
tests/rehearsal/test_snapstart_lifecycle.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import boto3
import pytest
import torch

from lambda_src.model_store import S3ModelStore
from lambda_src.prefetch import PrefetchingStore
from lambda_src.service import InferenceService
from lambda_src.snapstart import RUNTIME_THREAD_PREFIXES, SnapshotLifecycle, SnapshotRefused
from tests.support.events import api_gateway_event
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import Publication

from .conftest import MODEL_NAME, TEST_SETTINGS, ModelBucket


@pytest.fixture(autouse=True)
def _no_runtime_threads_of_other_tests() -> None:
    """The hook refuses while any prefetch or part read runs in the process: let other tests' end first.

    A test that gave up on a stalled store leaves its (daemon) read threads until their sockets
    time out; they are not this test's, and a Lambda environment runs one service only.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith(RUNTIME_THREAD_PREFIXES)]:
            return
        time.sleep(0.2)
    running = sorted(t.name for t in threading.enumerate() if t.name.startswith(RUNTIME_THREAD_PREFIXES))
    raise AssertionError(f"other tests' runtime threads still run after 60 s: {running}")


def loaded_service(bucket: ModelBucket, store: PrefetchingStore | None = None) -> InferenceService:
    service = InferenceService(
        bucket.location(MODEL_NAME), settings=TEST_SETTINGS, telemetry=CapturedTelemetry(), store=store
    )
    assert service.load()
    return service


def captured(service: InferenceService) -> CapturedTelemetry:
    assert isinstance(service.telemetry, CapturedTelemetry)
    return service.telemetry


def test_before_the_snapshot_the_prefetch_is_over_and_no_client_or_thread_is_kept(
    model_bucket: ModelBucket, published: Publication
) -> None:
    # Given a service loaded through the prefetch, as the handler loads it
    store = S3ModelStore(model_bucket.name, model_bucket.prefix)
    prefetching = PrefetchingStore(store, model_bucket.location(MODEL_NAME))
    service = loaded_service(model_bucket, prefetching)
    first_client = store.client
    # When the before-snapshot hook runs
    SnapshotLifecycle(service, prefetching).before_snapshot()
    # Then the prefetch thread is over, its buffers are dropped and no S3 client is kept
    assert not any(thread.name == "model-prefetch" for thread in threading.enumerate())
    assert prefetching._fetched == {} and prefetching._failed == {}
    assert store._client is None and store._part_client is None
    # and the snapshot is reported ready with the model and the memory it holds
    (ready,) = captured(service).logs("snapshot ready")
    assert (ready["model_name"], ready["model_version"]) == (MODEL_NAME, published.manifest.version)
    assert ready["peak_rss_mb"] > 100  # torch alone is more
    # And a later read (a reload after a restore) makes a new client
    assert store.read(f"{model_bucket.prefix}/{MODEL_NAME}/LATEST").strip() == b"v1"
    assert store._client is not None and store._client is not first_client


def test_a_client_given_to_the_store_is_kept_with_its_connections_closed(model_bucket: ModelBucket) -> None:
    client = boto3.client("s3", region_name="eu-west-1")
    store = S3ModelStore(model_bucket.name, model_bucket.prefix, client=client)
    store.close()
    assert store.client is client


def test_no_snapshot_is_taken_without_a_model_to_serve(
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    # Given a service whose model is not published
    service, _, _ = make_service("never-published")
    assert not service.load()
    # Then the before-snapshot hook refuses, with the reason the load failed
    with pytest.raises(SnapshotRefused, match=r"no snapshot without a model to serve \(not_published\)"):
        SnapshotLifecycle(service).before_snapshot()


def test_no_snapshot_is_taken_while_a_runtime_thread_still_runs(
    model_bucket: ModelBucket, published: Publication
) -> None:
    service = loaded_service(model_bucket)
    release = threading.Event()
    # (a prefetch that has not finished: the hook joins the one it is given, not a stray one)
    straggler = threading.Thread(target=release.wait, name="model-prefetch", daemon=True)
    straggler.start()
    try:
        with pytest.raises(
            SnapshotRefused, match="the runtime's threads still run at the snapshot: model-prefetch"
        ):
            SnapshotLifecycle(service).before_snapshot()
    finally:
        release.set()
        straggler.join(10)


def test_after_a_restore_credentials_threads_and_random_state_are_new_and_the_restore_is_reported(
    model_bucket: ModelBucket, published: Publication
) -> None:
    # Given a loaded service, snapshotted, and what the snapshot would hand every restore alike
    service = loaded_service(model_bucket)
    lifecycle = SnapshotLifecycle(service)
    lifecycle.before_snapshot()
    boto3.client("s3", region_name="eu-west-1")  # makes boto3's default session (and its credentials)
    session = boto3.DEFAULT_SESSION
    assert session is not None
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    torch.set_num_threads(2)  # the CPUs at the snapshot; TEST_SETTINGS asks for 1
    # When the environment is restored
    lifecycle.after_restore()
    # Then boto3 resolves credentials anew, torch runs the configured threads, and the generators moved on
    assert boto3.DEFAULT_SESSION is None
    assert torch.get_num_threads() == TEST_SETTINGS.torch_threads
    assert random.getstate() != python_state
    assert not torch.equal(torch.get_rng_state(), torch_state)
    # and the restore is logged and measured, once
    (restored,) = captured(service).logs("restored")
    assert restored["model_version"] == published.manifest.version
    assert restored["torch_threads"] == TEST_SETTINGS.torch_threads
    assert restored["restore_hooks_ms"] >= 0
    (metrics,) = [line for line in captured(service).metrics() if "Restores" in line]
    assert metrics["Restores"] == [1.0] and metrics["RestoreDuration"][0] >= 0
    units = {m["Name"]: m["Unit"] for m in metrics["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"Restores": "Count", "RestoreDuration": "Milliseconds"}
    # And the first request afterwards reports a restore, not a cold start; the next neither
    for _ in range(2):
        assert service.handle(api_gateway_event("GET", "/health"))["statusCode"] == 200
    requests = captured(service).logs("request")
    assert [(line["cold_start"], line["restored"]) for line in requests] == [(False, True), (False, False)]


def test_without_a_restore_the_first_request_is_the_cold_start(
    model_bucket: ModelBucket, published: Publication
) -> None:
    service = loaded_service(model_bucket)
    for _ in range(2):
        service.handle(api_gateway_event("GET", "/health"))
    requests = captured(service).logs("request")
    assert [(line["cold_start"], line["restored"]) for line in requests] == [(True, False), (False, False)]
