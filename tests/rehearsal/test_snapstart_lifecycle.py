"""SnapStart's lifecycle under AWS's runtime client: init, before-snapshot hooks, restore/next (the
snapshot), after-restore hooks, then requests; and each failing hook reported as Lambda reports it.

The emulator holds restore/next until the test restores the environment, as Lambda holds a
snapshot until it resumes an environment from it (lambda_rehearsal/runtime_api.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambda_src.contract import ENV_MODEL_NAME
from model_training.publishing import publish
from tests.rehearsal.conftest import FunctionConfig, StartFunction
from tests.support.events import api_gateway_event, json_event
from tests.support.images import b64, coloured_image, encode

pytestmark = pytest.mark.slow

SNAP_START = {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}
BUCKET = "snapstart-restore-models"  # its own: the moto server is shared with other rehearsal tests

# A handler module that is the real one plus one after-restore hook that fails, registered after
# the real hooks (the runtime client runs after-restore hooks in the order they were registered).
FAILING_RESTORE_HOOK = """
from snapshot_restore_py import register_after_restore

import lambda_src.handler as real

lambda_handler = real.lambda_handler


@register_after_restore
def refresh_configuration():
    raise RuntimeError("the configuration endpoint refused the restored environment")
"""


def records(log: str) -> list[dict[str, Any]]:
    """The function's JSON log lines (log records and metrics lines), in order."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def messages(log: str) -> list[str]:
    return [record["message"] for record in records(log) if "message" in record]


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


@pytest.fixture
def s3_endpoint() -> Iterator[ThreadedMotoServer]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server
    server.stop()


def test_the_hooks_run_in_order_and_the_first_request_after_a_restore_loads_nothing(
    start_function: StartFunction, empty_store: Path, training_output: Path, function_config: FunctionConfig
) -> None:
    model_name = function_config.environment[ENV_MODEL_NAME]
    assert function_config.snap_start  # the deployed default: rehearsed as Lambda runs it
    # Given a published model and an environment initialised for a snapshot
    publish(training_output, str(empty_store), model_name=model_name, progress=False)
    function = start_function(store=empty_store, **SNAP_START)
    # Then init loaded the model and the before-snapshot hooks ran before the snapshot was taken
    assert function.api.snapshot_taken.is_set() and function.api.init_error is None
    assert messages(function.log()) == ["model loaded", "snapshot ready"]
    # When it is restored
    function.restore()
    # Then the after-restore hooks ran, within Lambda's 10 s, and reported the restore
    assert function.api.restore_error is None
    assert function.restore_s is not None and function.restore_s < 10
    assert messages(function.log())[-1] == "restored"
    restore_metrics = [record for record in records(function.log()) if "Restores" in record]
    assert len(restore_metrics) == 1 and restore_metrics[0]["RestoreDuration"][0] >= 0
    # And its first request is answered from memory: a prediction, nothing loaded, reported a restore
    image = encode(coloured_image("green", seed=7), "PNG")
    predicted = function.invoke(json_event({"image": b64(image)}))
    assert predicted["statusCode"] == 200, predicted
    assert body(predicted)["results"][0]["predictions"][0]["label"] == "green"
    assert function.invoke(api_gateway_event("GET", "/health"))["statusCode"] == 200
    assert messages(function.log()) == ["model loaded", "snapshot ready", "restored", "request", "request"]
    requests = [record for record in records(function.log()) if record.get("message") == "request"]
    assert [(r["cold_start"], r["restored"]) for r in requests] == [(False, True), (False, False)]
    assert "Traceback" not in function.log()


def test_a_store_unreachable_at_restore_time_does_not_matter_the_model_is_in_memory(
    start_function: StartFunction, training_output: Path, function_config: FunctionConfig, s3_endpoint: Any
) -> None:
    model_name = function_config.environment[ENV_MODEL_NAME]
    host, port = s3_endpoint.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    publish(training_output, f"s3://{BUCKET}/models", model_name=model_name, progress=False, s3_client=client)
    # Given an environment snapshotted with the model read from S3 (through the prefetch)
    function = start_function(store=f"s3://{BUCKET}/models", AWS_ENDPOINT_URL_S3=endpoint, **SNAP_START)
    assert function.api.snapshot_taken.is_set(), function.log()
    # When the store is gone by the time the environment is restored
    s3_endpoint.stop()
    function.restore()
    # Then it answers as if nothing happened: the model is in the snapshot
    assert function.api.restore_error is None
    health = function.invoke(api_gateway_event("GET", "/health"))
    assert health["statusCode"] == 200, health
    image = encode(coloured_image("red", seed=3), "JPEG")
    raw = function.invoke(api_gateway_event("POST", "/predict", body=image, content_type="image/jpeg"))
    assert raw["statusCode"] == 200, raw
    assert "model loaded" not in messages(function.log())[2:]


def test_a_model_that_cannot_be_served_is_never_snapshotted_lambda_gets_a_before_snapshot_error(
    start_function: StartFunction, empty_store: Path
) -> None:
    # Given an environment initialised for a snapshot with no model published
    function = start_function(store=empty_store, **SNAP_START)
    # Then the runtime reported a before-snapshot error (the version is not published) and exited
    assert not function.api.snapshot_taken.is_set()
    assert function.api.init_error_type == "Runtime.BeforeSnapshotError"
    assert function.api.init_error is not None
    assert function.api.init_error["errorType"] == "SnapshotRefused"
    assert "no snapshot without a model to serve (not_published)" in function.api.init_error["errorMessage"]
    assert function.exited(within_s=60) == 64


def test_a_failing_after_restore_hook_is_reported_as_a_restore_error(
    start_function: StartFunction,
    empty_store: Path,
    training_output: Path,
    function_config: FunctionConfig,
    shared_dir: Path,
) -> None:
    model_name = function_config.environment[ENV_MODEL_NAME]
    publish(training_output, str(empty_store), model_name=model_name, progress=False)
    hooks = shared_dir / "failing-hook"
    hooks.mkdir(mode=0o755, exist_ok=True)
    (hooks / "failing_restore_hook.py").write_text(FAILING_RESTORE_HOOK)
    (hooks / "failing_restore_hook.py").chmod(0o644)
    # Given a snapshot whose last after-restore hook fails
    function = start_function(
        store=empty_store, handler="failing_restore_hook.lambda_handler", PYTHONPATH=str(hooks), **SNAP_START
    )
    assert function.api.snapshot_taken.is_set(), function.log()
    # When it is restored
    function.restore()
    # Then the runtime reported it to restore/error as Runtime.AfterRestoreError, after the real hooks ran
    assert function.api.restore_error_type == "Runtime.AfterRestoreError"
    assert function.api.restore_error is not None
    assert function.api.restore_error["errorType"] == "RuntimeError"
    assert "configuration endpoint refused" in function.api.restore_error["errorMessage"]
    assert "restored" in messages(function.log())
    assert function.exited(within_s=60) == 65  # exiting with torch loaded takes a while on a busy machine
    assert not function.api.ready.is_set()  # it never asked for an event
