"""The local endpoint reading its model from an S3 endpoint (moto's server, or one that never answers)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambda_src.errors import ModelArtifactError
from lambda_src.model_store import (
    LOAD_READ_BOUND_S,
    S3_CONNECT_TIMEOUT_S,
    S3_MAX_ATTEMPTS,
    S3_READ_TIMEOUT_S,
    STORE_CALL_BOUND_S,
    S3ModelStore,
)
from model_training.publishing import publish
from tests.e2e.conftest import MODEL_NAME, curl, top_labels
from tests.support.faulty_store import Fault, every_get_of, faulty_store
from tests.support.local_server import start_server
from tests.support.silent_store import silent_endpoint

BUCKET = "model-bucket"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible endpoint on 127.0.0.1 (moto's server, in this process)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_a_model_in_any_s3_endpoint_is_served_and_ctrl_c_stops_cleanly(
    s3_endpoint, training_output, examples, expected, tmp_path
):
    # Given a version published to a bucket behind an S3 endpoint chosen by AWS_ENDPOINT_URL_S3
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    published = publish(training_output, f"s3://{BUCKET}/models", progress=False, s3_client=client)
    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": s3_endpoint}
    args = ["--store", f"s3://{BUCKET}/models", "--model-name", MODEL_NAME]

    # When the local endpoint serves it
    server = start_server("local_endpoint", args, tmp_path / "server.log", env=env)
    try:
        health_status, health = curl(f"{server.url}/health")
        image = examples["jpeg"][0]
        predict_status, prediction = curl(
            "-H", "Content-Type: image/jpeg", "--data-binary", f"@{image}", f"{server.url}/predict"
        )
    finally:
        exit_code = server.stop(signal.SIGINT)

    # Then it serves that version, predicts like the model, and Ctrl-C ends it with exit code 0
    assert health_status == 200 and health["model"]["version"] == published.version
    assert predict_status == 200
    assert top_labels(prediction["results"][0]["predictions"]) == [label for label, _ in expected(image)]
    assert exit_code == 0
    output = server.log()
    assert output.rstrip().endswith("Stopped.")
    assert "received SIGINT" in output and "Traceback" not in output


def test_a_store_that_never_answers_gets_503s_within_the_bound_and_ctrl_c_still_stops_it(tmp_path):
    # Given an S3 endpoint that accepts connections and never answers, and loads retried on every request
    with silent_endpoint() as endpoint:
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint, "MODEL_RETRY_SECONDS": "0"}
        args = ["--store", f"s3://{BUCKET}/models", "--model-name", MODEL_NAME]
        # When the local endpoint starts (its first load gives up within the bound)
        server = start_server("local_endpoint", args, tmp_path / "server.log", env=env)
        try:
            # Then requests get 503 within the bound, even while another one is loading
            answers: list[tuple[int, dict, float]] = []

            def ask(path: str) -> None:
                started = time.monotonic()
                try:
                    status, body = curl(f"{server.url}{path}")
                except Exception as error:  # the assertion below shows it
                    status, body = 0, {"error": repr(error)}
                answers.append((status, body, time.monotonic() - started))

            clients = [
                threading.Thread(target=ask, args=(path,))
                for path in ("/health", "/health", "/health", "/nowhere")
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            stopping = time.monotonic()
        finally:
            exit_code = server.stop(signal.SIGINT, timeout_s=STORE_CALL_BOUND_S + 5)
        stopped_after = time.monotonic() - stopping

    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [404, 503, 503, 503], answers
    assert all(seconds <= STORE_CALL_BOUND_S + 2 for _, _, seconds in answers), answers
    assert {body["error"]["code"] for status, body, _ in answers if status == 503} == {"model_unavailable"}
    # and Ctrl-C stops it within the bound too, cleanly
    assert exit_code == 0 and stopped_after <= STORE_CALL_BOUND_S + 3
    assert "Traceback" not in server.log()


def test_every_s3_read_of_the_runtime_gives_up_within_the_bound(monkeypatch):
    # boto3's default session keeps the credentials it resolves: let this test's go with it
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with silent_endpoint() as endpoint:
        for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint}.items():
            monkeypatch.setenv(name, value)
        store = S3ModelStore(BUCKET, "models")
        started = time.monotonic()
        with pytest.raises(ModelArtifactError, match="timeout"):
            store.read("models/e2e-shapes/LATEST")
        elapsed = time.monotonic() - started
    assert elapsed <= STORE_CALL_BOUND_S
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (S3_CONNECT_TIMEOUT_S, S3_READ_TIMEOUT_S)
    assert config.retries == {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS}


def test_a_store_that_answers_then_drips_gets_503s_within_the_bound_and_ctrl_c_stops_it(
    training_output, tmp_path
):
    # Given a published model behind an S3 endpoint that answers the weights, then sends a byte a second
    with faulty_store(every_get_of("/model.pt", Fault.DRIP_BODY), bucket=BUCKET) as store:
        publish(training_output, f"s3://{BUCKET}/models", progress=False, s3_client=store.client)
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": store.url, "MODEL_RETRY_SECONDS": "0"}
        args = ["--store", f"s3://{BUCKET}/models", "--model-name", MODEL_NAME]
        # When the local endpoint starts (its first load gives up within the bound)
        server = start_server("local_endpoint", args, tmp_path / "server.log", env=env)
        try:
            # Then a request that loads again gets its 503 within the bound on a load's reads
            asked = time.monotonic()
            status, body = curl(
                f"{server.url}/predict", "-H", "Content-Type: image/png", "--data-binary", "x"
            )
            answered_s = time.monotonic() - asked
            stopping = time.monotonic()
        finally:
            exit_code = server.stop(signal.SIGINT, timeout_s=LOAD_READ_BOUND_S + 10)
        stopped_s = time.monotonic() - stopping
    assert status == 503 and body["error"]["reason"] == "store_unreadable", body
    assert answered_s <= LOAD_READ_BOUND_S + 3, answered_s
    # and Ctrl-C ends it at once, cleanly
    assert exit_code == 0 and stopped_s <= 3, stopped_s
    assert "Traceback" not in server.log()
    assert "did not answer within" in server.log()
