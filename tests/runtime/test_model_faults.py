"""A model that cannot be served: a clear 503 with the reason, no crash, and recovery once it is fixed."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lambda_src.architectures import build_model
from lambda_src.artifact import Manifest, Preprocessing, latest_key, manifest_key, weights_key
from lambda_src.model_store import STORE_CALL_BOUND_S, ModelStore, open_store
from lambda_src.service import InferenceService
from lambda_src.settings import RuntimeSettings
from tests.support.events import api_gateway_event, body_of, json_event
from tests.support.images import b64, coloured_image, encode
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import Publication, make_manifest, publish, state_dict_bytes

from .conftest import MODEL_NAME, PREFIX, TEST_SETTINGS, ModelBucket

PNG = encode(coloured_image("red", seed=30), "PNG")
HEALTH = api_gateway_event("GET", "/health")


class _RunsCodeWhenUnpickled:
    """What a malicious model.pt holds: unpickling it would write `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code ran"))


SMALL_ARCHITECTURE = "squeezenet1_1"  # ~5 MB of weights: faults need no trained model


@pytest.fixture(scope="module")
def small_weights() -> bytes:
    return state_dict_bytes(build_model(SMALL_ARCHITECTURE, 3))


def _small_manifest(name: str, version: str, weights: bytes, **overrides: Any) -> Manifest:
    return make_manifest(name, version, weights, **{"architecture": SMALL_ARCHITECTURE, **overrides})


def _publish_fault(bucket: ModelBucket, name: str, fault: str, weights: bytes, tmp_path: Path) -> str:
    """Publish model `name` broken in the way `fault` says; return words the 503 must contain."""

    def publish_small(version: str = "v1", data: bytes = weights, manifest: Manifest | None = None) -> None:
        manifest = manifest or _small_manifest(name, version, data)
        publish(
            bucket.write, prefix=PREFIX, model_name=name, version=version, weights=data, manifest=manifest
        )

    if fault == "nothing published":
        pointer = f"s3://{bucket.name}/{PREFIX}/{name}/LATEST"
        return f"model {name!r} has no published version: {pointer} does not exist"
    if fault == "weights missing":
        publish_small()
        bucket.delete(weights_key(PREFIX, name, "v1"))
        return f"s3://{bucket.name}/{PREFIX}/{name}/v1/model.pt does not exist"
    if fault == "manifest missing":
        publish_small()
        bucket.delete(manifest_key(PREFIX, name, "v1"))
        return f"{name}/v1/manifest.json does not exist"
    if fault == "corrupted weights":
        publish_small()
        middle = len(weights) // 2
        corrupted = weights[:middle] + bytes([weights[middle] ^ 0xFF]) + weights[middle + 1 :]
        bucket.write(weights_key(PREFIX, name, "v1"), corrupted)
        return "the weights are corrupt or were replaced"
    if fault == "truncated weights":
        publish_small()
        bucket.write(weights_key(PREFIX, name, "v1"), weights[:1000])
        return f"is 1000 bytes but the manifest says {len(weights)}"
    if fault == "unknown architecture":
        publish_small(manifest=_small_manifest(name, "v1", weights, architecture="resnet9000"))
        return "unknown architecture 'resnet9000'"
    if fault == "wrong class count":
        publish_small(
            manifest=_small_manifest(name, "v1", weights, labels=("red", "green", "blue", "yellow"))
        )
        return (
            "do not fit squeezenet1_1 with the manifest's 4 classes: "
            "2 tensors of the wrong shape "
            "(first: classifier.1.weight is [3, 512, 1, 1], expected [4, 512, 1, 1])"
        )
    if fault == "not a state dict":
        publish_small(data=b"these bytes are no torch file")
        return "is not a loadable state dict"
    if fault == "pickled code":
        buffer = io.BytesIO()
        torch.save({"classifier.1.weight": _RunsCodeWhenUnpickled(tmp_path / "marker")}, buffer)
        publish_small(data=buffer.getvalue())
        return "is not a loadable state dict"
    if fault == "manifest not JSON":
        publish_small()
        bucket.write(manifest_key(PREFIX, name, "v1"), b"{not json")
        return "manifest is not valid JSON"
    if fault == "manifest of another version":
        publish_small("v2", manifest=_small_manifest(name, "v1", weights))
        return f"describes {name!r} version 'v1', not {name!r} version 'v2'"
    if fault == "LATEST names no version":
        bucket.write(latest_key(PREFIX, name), b"../../etc/passwd")
        return "does not name a version"
    if fault == "input too small for the architecture":
        publish_small(
            manifest=_small_manifest(name, "v1", weights, preprocessing=Preprocessing(resize=16, crop=16))
        )
        return "the model cannot run on the manifest's 16x16 input"
    if fault == "weights hold NaN":
        network = build_model(SMALL_ARCHITECTURE, 3)
        with torch.no_grad():
            network.features[0].weight[0, 0, 0, 0] = float("nan")
        publish_small(data=state_dict_bytes(network))
        return "the model's outputs are not finite numbers"
    if fault == "manifest nested too deeply":
        publish_small()
        bucket.write(manifest_key(PREFIX, name, "v1"), b"[" * 100_000 + b"]" * 100_000)
        return "nested too deeply"
    if fault in BAD_PREPROCESSING:
        publish_small()
        manifest = _small_manifest(name, "v1", weights).to_dict()
        manifest["preprocessing"].update(BAD_PREPROCESSING[fault][0])
        bucket.write(manifest_key(PREFIX, name, "v1"), json.dumps(manifest).encode())
        return BAD_PREPROCESSING[fault][1]
    raise AssertionError(fault)


# Preprocessing no image can be normalised with: each would give scores of NaN or infinity.
BAD_PREPROCESSING = {
    "manifest mean NaN": ({"mean": [float("nan"), 0.5, 0.5]}, "NaN is not a JSON number"),
    "manifest std Infinity": ({"std": [0.2, float("inf"), 0.2]}, "Infinity is not a JSON number"),
    "manifest std 1e-300": ({"std": [1e-300, 0.2, 0.2]}, "preprocessing.std must be from 0.01 to 10"),
    "manifest mean 1e300": ({"mean": [1e300, 0.5, 0.5]}, "preprocessing.mean must be from 0 to 1"),
}

FAULT_REASONS = {
    "nothing published": "not_published",
    "weights missing": "artifact_missing",
    "manifest missing": "artifact_missing",
    "corrupted weights": "invalid_model",
    "truncated weights": "invalid_model",
    "unknown architecture": "invalid_model",
    "wrong class count": "invalid_model",
    "not a state dict": "invalid_model",
    "pickled code": "invalid_model",
    "manifest not JSON": "invalid_model",
    "manifest of another version": "invalid_model",
    "LATEST names no version": "invalid_model",
    "input too small for the architecture": "invalid_model",
    "weights hold NaN": "invalid_model",
    "manifest nested too deeply": "invalid_model",
    **dict.fromkeys(BAD_PREPROCESSING, "invalid_model"),
}
FAULTS = list(FAULT_REASONS)


def assert_unavailable(
    response: dict[str, Any], telemetry: CapturedTelemetry, reason: str, words: str
) -> str:
    """A 503 with its stable reason and a short message; the details (`words`) only in the log line."""
    assert response["statusCode"] == 503, response["body"]
    error = body_of(response)["error"]
    assert (error["code"], error["reason"]) == ("model_unavailable", reason)
    assert words not in response["body"] and "s3://" not in response["body"]
    assert "Traceback" not in response["body"]
    assert int(response["headers"]["Retry-After"]) >= 1
    request_id = _quoted_request_id(error["message"])  # the caller's handle on the details
    (logged,) = [line for line in telemetry.logs("request") if line.get("api_request_id") == request_id]
    assert (logged["error_reason"], logged["status"]) == (reason, 503)
    assert words in logged["error"]
    message: str = error["message"]
    return message


def _quoted_request_id(message: str) -> str:
    found = re.search(r"request id '([^']+)'", message)
    assert found, message
    return found.group(1)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_model_answers_503_with_the_reason_and_keeps_answering(
    model_bucket: ModelBucket,
    small_weights: bytes,
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
    tmp_path: Path,
    fault: str,
) -> None:
    name = "fault-" + fault.replace(" ", "-")
    words = _publish_fault(model_bucket, name, fault, small_weights, tmp_path)
    service, telemetry, _ = make_service(name)

    assert service.load() is False  # what the handler module does at init
    reason = FAULT_REASONS[fault]
    assert_unavailable(service.handle(HEALTH), telemetry, reason, words)
    assert_unavailable(service.handle(json_event({"image": b64(PNG)})), telemetry, reason, words)
    # Routing still works, and client errors still come first where no model is needed.
    assert service.handle(api_gateway_event("GET", "/nowhere"))["statusCode"] == 404

    (failure,) = telemetry.logs("model load failed")  # one attempt: the retry interval has not passed
    assert words in failure["reason"]
    assert failure["level"] == "ERROR"
    assert [m["ModelLoadFailures"] for m in telemetry.metrics() if "ModelLoadFailures" in m] == [[1.0]]
    assert not (tmp_path / "marker").exists()


def test_a_model_published_after_the_deploy_is_picked_up_after_the_retry_interval(
    model_bucket: ModelBucket,
    tiny_weights: bytes,
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    service, telemetry, now = make_service("published-late", model_retry_seconds=30)
    assert service.load() is False
    first = service.handle(HEALTH)
    assert_unavailable(first, telemetry, "not_published", "has no published version")
    assert first["headers"]["Retry-After"] == "30"
    assert "next load attempt in 30 s" in body_of(first)["error"]["message"]

    publish(
        model_bucket.write, prefix=PREFIX, model_name="published-late", version="v7", weights=tiny_weights
    )
    now[0] += 10
    assert service.handle(HEALTH)["headers"]["Retry-After"] == "20"  # no new attempt before the interval
    assert len(telemetry.logs("model load failed")) == 1

    now[0] += 21
    health = service.handle(HEALTH)
    assert health["statusCode"] == 200
    assert body_of(health)["model"]["version"] == "v7"
    prediction = service.handle(json_event({"image": b64(PNG)}))
    assert body_of(prediction)["results"][0]["predictions"][0]["label"] == "red"
    (loaded,) = telemetry.logs("model loaded")
    assert loaded["model_version"] == "v7"


def test_model_load_logs_each_init_phase_and_emits_its_duration(
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    service, telemetry, _ = make_service("colours")
    assert service.load(init_phases_ms={"imports": 1234.5})
    (loaded,) = telemetry.logs("model loaded")
    assert (loaded["model_name"], loaded["model_version"], loaded["architecture"]) == (
        "colours",
        "v1",
        "resnet18",
    )
    assert loaded["torch_threads"] == 1
    assert set(loaded["phases_ms"]) >= {
        "imports",
        "open_store",
        "resolve_version",
        "read_manifest",
        "read_weights",
        "verify_weights",
        "read_state_dict",
        "build_and_load",
        "warm_up",
    }
    assert loaded["phases_ms"]["imports"] == 1234.5
    assert loaded["load_ms"] >= loaded["phases_ms"]["read_weights"]
    (metric,) = [m for m in telemetry.metrics() if "ModelLoadDuration" in m]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "ModelLoadDuration", "Unit": "Milliseconds"}
    ]


def test_a_pinned_version_is_served_without_reading_latest(
    model_bucket: ModelBucket,
    small_weights: bytes,
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    for version in ("2024-06-01", "2024-07-01"):  # LATEST ends up naming the second
        manifest = _small_manifest("pinned", version, small_weights)
        publish(
            model_bucket.write,
            prefix=PREFIX,
            model_name="pinned",
            version=version,
            weights=small_weights,
            manifest=manifest,
        )
    service, _, _ = make_service("pinned", version="2024-06-01")
    assert body_of(service.handle(HEALTH))["model"]["version"] == "2024-06-01"
    missing, telemetry, _ = make_service("pinned", version="2031-01-01")
    answer = missing.handle(HEALTH)
    assert_unavailable(
        answer, telemetry, "artifact_missing", "pinned/2031-01-01/manifest.json does not exist"
    )


@pytest.mark.parametrize(
    ("environment", "words"),
    [
        ({}, "the function is misconfigured: MODEL_STORE: not set"),
        ({"MODEL_STORE": "s3://bucket/models"}, "MODEL_NAME: invalid model name ''"),
        (
            {"MODEL_STORE": "s3://bucket/models", "MODEL_NAME": "../etc"},
            "MODEL_NAME: invalid model name '../etc'",
        ),
        (
            {"MODEL_STORE": "s3://bucket/models", "MODEL_NAME": "m", "MODEL_VERSION": "v1/../x"},
            "MODEL_VERSION: invalid version 'v1/../x'",
        ),
        ({"MODEL_STORE": "s3://", "MODEL_NAME": "m"}, "misconfigured: MODEL_STORE: 's3://' names no bucket"),
        (
            {"MODEL_STORE": "s3://bucket/models", "MODEL_NAME": "m", "MAX_BATCH_SIZE": "lots"},
            "MAX_BATCH_SIZE must be a whole number, got 'lots'",
        ),
        (
            {"MODEL_STORE": "s3://bucket/models", "MODEL_NAME": "m", "MODEL_RETRY_SECONDS": "-5"},
            "MODEL_RETRY_SECONDS must be zero or more seconds",
        ),
        (
            {"MODEL_STORE": "ftp://host/models", "MODEL_NAME": "m"},
            "misconfigured: MODEL_STORE: unsupported model store 'ftp://host/models'",
        ),
    ],
)
def test_a_misconfigured_function_answers_503_saying_which_setting_is_wrong(
    environment: dict[str, str], words: str
) -> None:
    telemetry = CapturedTelemetry()
    service = InferenceService.from_env(environment, telemetry=telemetry)
    assert service.load() is False
    assert_unavailable(service.handle(HEALTH), telemetry, "misconfigured", words)
    assert_unavailable(service.handle(json_event({"image": b64(PNG)})), telemetry, "misconfigured", words)
    assert words in telemetry.logs("model load failed")[0]["reason"]


def test_concurrent_requests_load_the_model_once_and_are_all_answered(
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    service, telemetry, _ = make_service("colours")  # not loaded yet: the first requests race to load it
    events = [HEALTH if i % 2 else json_event({"image": b64(PNG)}) for i in range(8)]
    answers: list[tuple[str, dict[str, Any]]] = []
    barrier = threading.Barrier(len(events))

    def call(event: dict[str, Any]) -> None:
        barrier.wait()
        answers.append((event["path"], service.handle(event)))

    threads = [threading.Thread(target=call, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Predictions wait for the load in progress; health checks never wait: 200, or 503 "loading"
    assert [answer["statusCode"] for path, answer in answers if path == "/predict"] == [200] * 4
    for path, answer in answers:
        if path == "/health" and answer["statusCode"] != 200:
            assert body_of(answer)["error"]["reason"] == "loading", answer
    assert len(answers) == len(events)
    assert len(telemetry.logs("model loaded")) == 1
    assert len(telemetry.logs("request")) == len(events)


def test_concurrent_requests_for_a_missing_model_make_one_load_attempt(
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    service, telemetry, _ = make_service("never-published")
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(service.handle(HEALTH)["statusCode"]))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [503] * 6
    assert len(telemetry.logs("model load failed")) == 1


def test_zero_retry_interval_tries_again_on_every_request(
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    service, telemetry, _ = make_service("still-missing", model_retry_seconds=0)
    for _ in range(3):
        service.handle(HEALTH)
    assert len(telemetry.logs("model load failed")) == 3


def test_settings_from_the_environment_reach_the_service(model_bucket: ModelBucket) -> None:
    environment = {
        "MODEL_STORE": f"s3://{model_bucket.name}/{PREFIX}",
        "MODEL_NAME": "colours",
        "MODEL_VERSION": "v1",
        "MAX_BATCH_SIZE": "2",
        "TORCH_NUM_THREADS": "1",
    }
    service = InferenceService.from_env(environment, telemetry=CapturedTelemetry())
    assert service.settings == RuntimeSettings(max_batch_size=2, torch_threads=1)
    response = service.handle(json_event({"images": [b64(PNG)] * 3}))
    assert response["statusCode"] == 413
    assert "at most 2 per request" in body_of(response)["error"]["message"]


class _StoreThatStalls:
    """A model store whose reads wait until the test lets them through: a store that stopped answering."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.prefix = store.prefix
        self.store_uri = store.store_uri
        self.entered = threading.Event()
        self.release = threading.Event()

    def read(self, key: str, *, size: int | None = None) -> bytes:
        self.entered.set()
        self.release.wait(60)
        return self.store.read(key, size=size)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def describe(self, key: str) -> str:
        return self.store.describe(key)


def test_no_request_waits_on_a_load_in_progress_past_the_bound_and_routing_and_health_never_wait(
    model_bucket: ModelBucket, published: Publication
) -> None:
    # Given a load in progress that the store holds up
    location = model_bucket.location(MODEL_NAME)
    stalling = _StoreThatStalls(open_store(location.store_uri))
    service = InferenceService(
        location, settings=TEST_SETTINGS, telemetry=CapturedTelemetry(), store=stalling
    )
    assert service.holder.load_wait_s == STORE_CALL_BOUND_S
    service.holder.load_wait_s = 0.5  # the production bound is 7 s; the test's is shorter
    loading = threading.Thread(target=service.load)
    loading.start()
    assert stalling.entered.wait(30)
    try:
        # When requests arrive meanwhile
        waited = {}
        for name, event, status in (
            ("predict", json_event({"image": b64(PNG)}), 503),
            ("health", HEALTH, 503),
            ("unknown route", api_gateway_event("GET", "/nowhere"), 404),
            ("wrong method", api_gateway_event("DELETE", "/predict"), 405),
        ):
            started = time.monotonic()
            answer = service.handle(event)
            waited[name] = time.monotonic() - started
            assert answer["statusCode"] == status, (name, answer)
            if status == 503:
                assert body_of(answer)["error"]["reason"] == "loading"
    finally:
        stalling.release.set()
        loading.join(60)
    # Then a prediction waited for the load at most the bound, and nothing else waited at all
    assert 0.5 <= waited.pop("predict") < 0.5 + 1
    assert all(seconds < 0.5 for seconds in waited.values()), waited
    # and once the store answers, the model is served
    assert service.handle(HEALTH)["statusCode"] == 200


class _SlowToReadColdStart(InferenceService):
    """Reading the cold-start flag takes a while, so requests overlap exactly where it flips."""

    @property
    def _cold_start(self) -> bool:
        value: bool = self.__dict__["cold"]
        time.sleep(0.05)  # between reading the flag and clearing it
        return value

    @_cold_start.setter
    def _cold_start(self, value: bool) -> None:
        self.__dict__["cold"] = value


def test_exactly_one_request_reports_the_cold_start_even_when_requests_overlap(
    model_bucket: ModelBucket, published: Publication
) -> None:
    telemetry = CapturedTelemetry()
    service = _SlowToReadColdStart(
        model_bucket.location(MODEL_NAME), settings=TEST_SETTINGS, telemetry=telemetry
    )
    threads = [
        threading.Thread(target=service.handle, args=(api_gateway_event("GET", "/nowhere"),))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [line["cold_start"] for line in telemetry.logs("request")].count(True) == 1
