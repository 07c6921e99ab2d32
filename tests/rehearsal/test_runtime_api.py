"""The Runtime API emulator itself: Lambda's headers, and each limit it holds a function to.

A plain HTTP client plays the runtime here, so each limit can be broken on purpose.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest

from lambda_rehearsal.runtime_api import INIT_LIMIT_S, PREFIX, Invocation, LimitExceeded, RuntimeApi
from lambda_src.contract import LAMBDA_MAX_PAYLOAD_BYTES


def call(api: RuntimeApi, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(api.address, timeout=10)
    connection.request(method, f"{PREFIX}{path}", body=body)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def invoke_in_background(api: RuntimeApi, event: dict[str, Any]) -> list[Any]:
    outcome: list[Any] = []

    def invoke() -> None:
        try:
            outcome.append(api.invoke(event))
        except LimitExceeded as error:
            outcome.append(error)

    threading.Thread(target=invoke, daemon=True).start()
    return outcome


def wait_for(outcome: list[Any]) -> Any:
    deadline = time.monotonic() + 10
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    return outcome[0]


def test_next_carries_lambdas_headers_and_the_response_comes_back() -> None:
    with RuntimeApi(timeout_s=5) as api:
        outcome = invoke_in_background(api, {"path": "/health"})
        next_event = call(api, "GET", "/invocation/next")
        request_id = next_event.getheader("Lambda-Runtime-Aws-Request-Id")
        deadline_ms = int(next_event.getheader("Lambda-Runtime-Deadline-Ms"))
        assert 0 < deadline_ms / 1000 - time.time() <= 5
        assert next_event.getheader("Lambda-Runtime-Invoked-Function-Arn").startswith("arn:aws:lambda:")
        assert next_event.getheader("Lambda-Runtime-Trace-Id").startswith("Root=1-")
        assert call(api, "POST", f"/invocation/{request_id}/response", b'{"statusCode": 200}').status == 202
        invocation: Invocation = wait_for(outcome)
    assert invocation.response == {"statusCode": 200} and invocation.error is None
    assert api.ready.is_set()


def test_a_response_over_6_mb_is_refused_as_lambda_refuses_it() -> None:
    with RuntimeApi(timeout_s=5) as api:
        outcome = invoke_in_background(api, {})
        request_id = call(api, "GET", "/invocation/next").getheader("Lambda-Runtime-Aws-Request-Id")
        too_large = json.dumps("x" * LAMBDA_MAX_PAYLOAD_BYTES).encode()
        assert call(api, "POST", f"/invocation/{request_id}/response", too_large).status == 413
        invocation: Invocation = wait_for(outcome)
    assert invocation.refused == "Function.ResponseSizeTooLarge"


def test_an_invocation_past_the_functions_timeout_fails() -> None:
    with RuntimeApi(timeout_s=0.3) as api:
        outcome = invoke_in_background(api, {})
        call(api, "GET", "/invocation/next")  # the runtime takes the event and never answers
        failure = wait_for(outcome)
    assert isinstance(failure, LimitExceeded) and "timeout" in str(failure)


def test_init_past_lambdas_10_s_fails_and_an_init_error_ends_the_wait() -> None:
    with RuntimeApi(timeout_s=5) as api:
        with pytest.raises(LimitExceeded, match="init did not finish"):
            api.wait_for_init(time.monotonic() - INIT_LIMIT_S - 0.1)
        error = {"errorType": "Runtime.ImportModuleError", "errorMessage": "no module"}
        assert call(api, "POST", "/init/error", json.dumps(error).encode()).status == 202
        assert api.wait_for_init(time.monotonic()) < 1
    assert api.init_error == error
