"""`python -m endpoint_client smoke-test`: a real local endpoint, stack outputs, and endpoints that fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from endpoint_client.cli import main
from lambda_src.contract import AuthMode, StackOutput
from tests.operations.conftest import MODEL_NAME, error_answer, health_answer, predict_answer
from tests.support.local_server import REPO_ROOT, ServerProcess

REGION = "eu-west-1"
STACK = "SmokeInference"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the real command line in this process: (exit code, stdout, stderr)."""
    code = main(["smoke-test", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create_stack(outputs: dict[str, str]) -> None:
    """A CloudFormation stack (moto) whose outputs are the inference stack's."""
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps(template)
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """moto's in-process AWS with fake credentials; nothing reaches real AWS."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def test_the_command_passes_against_the_local_endpoint(local_endpoint: ServerProcess, tmp_path: Path) -> None:
    # Given the local endpoint serving v1 of a real model
    # When the smoke test runs as a user runs it (make smoke runs the same module)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "endpoint_client",
            "smoke-test",
            "--endpoint-url",
            local_endpoint.url,
            "--expect-model",
            MODEL_NAME,
            "--expect-version",
            "v1",
            "--requests",
            "3",
        ],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    # Then it passes and reports the model, a real prediction and the latencies
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"smoke test of {local_endpoint.url} (auth: none)"
    assert f"model {MODEL_NAME} version v1 (architecture resnet18, num_classes 4)" in lines[1]
    assert lines[2] == "  version  v1 as expected (given with --expect-version)"
    assert lines[3].startswith("  predict  200 x 3: circle-1.jpg -> ")
    assert lines[4].startswith("  latency  first ") and "then median" in lines[4] and "over 2" in lines[4]
    assert lines[-1] == "smoke test passed"
    assert result.stderr == ""


def test_expected_version_from_the_stack_follows_latest_in_its_store(
    aws: None, local_endpoint: ServerProcess, model_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack whose outputs point at the local endpoint and store, serving 'latest'
    create_stack(
        {
            StackOutput.ENDPOINT_URL: local_endpoint.url + "/",
            StackOutput.AUTH_MODE: AuthMode.NONE,
            StackOutput.MODEL_NAME: MODEL_NAME,
            StackOutput.MODEL_VERSION: "latest",
            StackOutput.MODEL_STORE_URI: str(model_store),
        }
    )
    # When the smoke test reads the stack
    code, out, err = run_cli(capsys, "--stack", STACK, "--region", REGION, "--requests", "1")
    # Then it expects the version LATEST names (v1), finds it, and passes
    assert code == 0, err
    assert f"  version  v1 as expected (what {model_store}/{MODEL_NAME}/LATEST names)" in out.splitlines()
    assert out.splitlines()[-1] == "smoke test passed"


def test_a_pinned_version_in_the_stack_that_is_not_served_fails(
    aws: None, local_endpoint: ServerProcess, model_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(
        {
            StackOutput.ENDPOINT_URL: local_endpoint.url,
            StackOutput.AUTH_MODE: AuthMode.NONE,
            StackOutput.MODEL_NAME: MODEL_NAME,
            StackOutput.MODEL_VERSION: "v2",
        }
    )
    code, _, err = run_cli(capsys, "--stack", STACK, "--region", REGION)
    assert code == 1
    assert err.strip() == (
        f"smoke test FAILED: GET {local_endpoint.url}/health serves model version 'v1', but 'v2' was "
        f"expected (the stack's ModelVersion output ({STACK}))"
    )


def test_the_wrong_model_version_fails_with_what_was_served(
    local_endpoint: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "--endpoint-url", local_endpoint.url, "--expect-version", "v7")
    assert code == 1
    assert err.strip() == (
        f"smoke test FAILED: GET {local_endpoint.url}/health serves model version 'v1', but 'v7' was "
        "expected (given with --expect-version)"
    )
    assert "smoke test passed" not in out


def test_an_endpoint_that_is_down_fails_with_where_it_looked(
    free_port_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "--endpoint-url", free_port_url)
    assert code == 1
    assert err.startswith(f"smoke test FAILED: cannot reach {free_port_url}health: ")
    assert "Connection refused" in err
    assert "Traceback" not in err


def test_a_failing_health_check_fails_with_the_servers_message(
    scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = scripted_endpoint(
        health=lambda _: error_answer(
            503, "model_unavailable", "the model cannot be served: LATEST is missing"
        ),
        predict=lambda _: predict_answer(),
    )
    code, _, err = run_cli(capsys, "--endpoint-url", url)
    assert code == 1
    assert err.strip() == (
        f"smoke test FAILED: GET {url}health answered 503: model_unavailable: the model cannot be served: "
        "LATEST is missing"
    )


def test_errors_from_predict_fail_with_the_servers_message(
    scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = scripted_endpoint(
        health=lambda _: health_answer(), predict=lambda _: error_answer(500, "internal_error", "boom")
    )
    code, out, err = run_cli(capsys, "--endpoint-url", url, "--expect-version", "v1")
    assert code == 1
    assert "  version  v1 as expected" in out  # health passed before predict failed
    assert err.strip() == (
        "smoke test FAILED: POST /predict with circle-1.jpg: the endpoint answered 500 internal_error: boom"
    )


def test_an_api_gateway_error_without_json_fails_readably(
    scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = scripted_endpoint(
        health=lambda _: (502, {"message": "Internal server error"}), predict=lambda _: (502, {})
    )
    code, _, err = run_cli(capsys, "--endpoint-url", url)
    assert code == 1
    assert err.strip() == f"smoke test FAILED: GET {url}health answered 502: Internal server error"


def test_two_versions_answering_during_a_rollout_fail(
    scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = scripted_endpoint(health=lambda _: health_answer("v1"), predict=lambda _: predict_answer("v2"))
    code, _, err = run_cli(capsys, "--endpoint-url", url)
    assert code == 1
    assert "POST /predict was answered by model version 'v2' while /health said 'v1'" in err


def test_api_key_from_the_stack_is_read_and_sent(
    aws: None, scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an API key in API Gateway (moto) and an endpoint that accepts only that key
    key = boto3.client("apigateway", region_name=REGION).create_api_key(name="smoke", enabled=True)

    def keyed(answer: Callable[[], tuple[int, dict]]) -> Callable:
        def route(request) -> tuple[int, dict]:
            if request.headers.get("x-api-key") != key["value"]:
                return 403, {"message": "Forbidden"}
            return answer()

        return route

    url = scripted_endpoint(health=keyed(health_answer), predict=keyed(predict_answer))
    create_stack(
        {
            StackOutput.ENDPOINT_URL: url,
            StackOutput.AUTH_MODE: AuthMode.API_KEY,
            StackOutput.API_KEY_ID: key["id"],
            StackOutput.MODEL_NAME: MODEL_NAME,
            StackOutput.MODEL_VERSION: "v1",
        }
    )
    # When the smoke test reads the stack, then it fetches the key's value and passes
    code, out, err = run_cli(capsys, "--stack", STACK, "--region", REGION, "--requests", "2")
    assert code == 0, err
    assert out.splitlines()[0] == f"smoke test of {url} (auth: {AuthMode.API_KEY})"
    # And without the key the same endpoint fails the test
    code, _, err = run_cli(capsys, "--endpoint-url", url, "--auth", AuthMode.API_KEY, "--api-key", "wrong")
    assert (code, err.strip()) == (1, f"smoke test FAILED: GET {url}health answered 403: Forbidden")


def test_a_missing_stack_fails_with_what_to_do(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--stack", "NoSuchStack", "--region", REGION)
    assert code == 1
    assert err.startswith(
        "smoke test FAILED: cannot read stack NoSuchStack: Stack with id NoSuchStack does not exist"
    )


def test_iam_auth_signs_both_requests_with_sigv4(
    monkeypatch: pytest.MonkeyPatch, scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given credentials in the environment and an endpoint that wants SigV4 for execute-api in the region
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    scope = f"/{REGION}/execute-api/aws4_request"
    seen: list[str] = []

    def signed(answer: Callable[[], tuple[int, dict]]) -> Callable:
        def route(request) -> tuple[int, dict]:
            authorization = request.headers.get("Authorization", "")
            seen.append(f"{request.command} {authorization.split(',')[0]}")
            if (
                not authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                or scope not in authorization
            ):
                return 403, {"message": "Missing Authentication Token"}
            return answer()

        return route

    url = scripted_endpoint(health=signed(health_answer), predict=signed(predict_answer))
    # When the smoke test runs with --auth iam, then both the GET and the POST carry a signature
    code, _, err = run_cli(
        capsys, "--endpoint-url", url, "--auth", "iam", "--region", REGION, "--requests", "1"
    )
    assert code == 0, err
    assert [line.split(" ")[0] for line in seen] == ["GET", "POST"]
    assert all(scope in line for line in seen)


def test_model_trainings_smoke_test_alias_runs_the_same_checks(
    scripted_endpoint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    from model_training.cli import main as model_training_main

    url = scripted_endpoint(health=lambda _: health_answer("v1"), predict=lambda _: predict_answer("v2"))
    code = model_training_main(["smoke-test", "--endpoint-url", url, "--requests", "1"])
    assert code == 1
    assert "while /health said 'v1'" in capsys.readouterr().err
