"""The local API Gateway stand-in: real HTTP in, the proxy event a handler sees, its answer back out.

A recording handler stands in for the function here, so each test can state exactly
which event API Gateway would have built and which HTTP response it would have sent.
The real handler behind the same server is tested in test_local_endpoint.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel

from local_endpoint import gateway
from local_endpoint.server import LocalEndpoint


class RecordingHandler:
    """Records each (event, context) and answers with the next canned proxy response."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Any]] = []
        self.response: Any = {"statusCode": 200, "body": '{"ok": true}'}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls.append((event, context))
        if isinstance(self.response, Exception):
            raise self.response
        return self.response

    @property
    def event(self) -> dict[str, Any]:
        return self.calls[-1][0]


@pytest.fixture
def recorder() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def access_log() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def endpoint(recorder: RecordingHandler, access_log: list[dict[str, Any]]) -> Iterator[LocalEndpoint]:
    server = LocalEndpoint(("127.0.0.1", 0), recorder, log=access_log.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def request(
    server: LocalEndpoint, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    connection.request(method, target, body=body, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_json_post_becomes_a_text_event_with_query_and_headers(endpoint, recorder):
    # Given a JSON body, a repeated query parameter and a header in mixed case
    body = json.dumps({"image": "aGVsbG8="}).encode()

    # When it is posted
    response = request(
        endpoint,
        "POST",
        "/predict?top_k=2&top_k=3&flag",
        body,
        {"Content-Type": "application/json; charset=utf-8", "X-Custom-Header": "a"},
    )

    # Then the handler got API Gateway's v1 proxy event, and its answer came back
    assert response.status == 200
    assert response.body == b'{"ok": true}'
    event = recorder.event
    APIGatewayProxyEventModel.model_validate(event)
    assert event["resource"] == event["path"] == "/predict"
    assert event["httpMethod"] == "POST"
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"top_k": "3", "flag": ""}
    assert event["multiValueQueryStringParameters"] == {"top_k": ["2", "3"], "flag": [""]}
    assert event["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert event["headers"]["X-Custom-Header"] == "a"
    assert event["multiValueHeaders"]["X-Custom-Header"] == ["a"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["pathParameters"] is None and event["stageVariables"] is None
    context = event["requestContext"]
    assert context["stage"] == "v1" and context["path"] == "/v1/predict"
    assert context["resourcePath"] == "/predict" and context["httpMethod"] == "POST"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert isinstance(context["requestTimeEpoch"], int)
    assert response.getheader("x-amzn-RequestId") == context["requestId"]


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/webp", "IMAGE/PNG; name=x"])
def test_image_bodies_arrive_base64_encoded(endpoint, recorder, content_type):
    raw = bytes(range(256)) * 4  # not UTF-8: only base64 carries it intact

    request(endpoint, "POST", "/predict", raw, {"Content-Type": content_type})

    assert recorder.event["isBase64Encoded"] is True
    assert base64.b64decode(recorder.event["body"]) == raw


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/gif", "text/plain"])
def test_other_bodies_arrive_as_text_because_no_wildcard_binary_type_is_configured(
    endpoint, recorder, content_type
):
    request(endpoint, "POST", "/predict", b"plain words", {"Content-Type": content_type})

    assert recorder.event["isBase64Encoded"] is False
    assert recorder.event["body"] == "plain words"


def test_get_without_query_or_body_has_nulls_where_api_gateway_puts_them(endpoint, recorder):
    request(endpoint, "GET", "/health")

    event = recorder.event
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def test_repeated_request_headers_keep_every_value(endpoint, recorder):
    connection = http.client.HTTPConnection(*endpoint.server_address[:2], timeout=10)
    connection.putrequest("GET", "/health")
    connection.putheader("X-Tag", "one")
    connection.putheader("X-Tag", "two")
    connection.endheaders()
    connection.getresponse().read()
    connection.close()

    assert recorder.event["headers"]["X-Tag"] == "two"
    assert recorder.event["multiValueHeaders"]["X-Tag"] == ["one", "two"]


def test_every_unknown_route_and_method_reaches_the_handler(endpoint, recorder):
    request(endpoint, "DELETE", "/no/such/route")

    assert recorder.event["resource"] == "/no/such/route"
    assert recorder.event["httpMethod"] == "DELETE"


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "X-ANY-TOKEN"])
def test_methods_http_server_does_not_know_reach_the_handler_and_the_access_log(
    endpoint, recorder, access_log, method
):
    response = request(endpoint, method, "/predict")

    assert response.status == 200  # the recording handler's answer: the request got through
    assert recorder.event["httpMethod"] == method
    wait_for(lambda: access_log)
    assert (access_log[0]["httpMethod"], access_log[0]["status"]) == (method, 200)


def test_a_request_line_claiming_http_2_is_a_json_400_in_the_access_log(endpoint, recorder, access_log):
    with socket.create_connection(endpoint.server_address[:2], timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/2.0\r\nHost: localhost\r\n\r\n")
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        body = json.loads(answer.read())

    assert answer.status == 400
    assert body["error"]["code"] == "bad_request" and "HTTP version" in body["error"]["message"]
    assert recorder.calls == []
    wait_for(lambda: access_log)
    (line,) = access_log
    assert line["status"] == 400 and line["requestId"] == answer.getheader("x-amzn-RequestId")


def wait_for(condition: Any, timeout_s: float = 5) -> None:
    """The access log line is written right after the response is sent: give it a moment."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_context_looks_like_the_lambda_runtime_one(endpoint, recorder):
    request(endpoint, "GET", "/health")
    request(endpoint, "GET", "/health")

    (_, first), (_, second) = recorder.calls
    assert first.aws_request_id != second.aws_request_id
    assert first.function_name == "InferenceFunction"
    assert first.memory_limit_in_mb == "3008"
    assert first.invoked_function_arn.endswith(":function:InferenceFunction")
    assert first.log_stream_name == second.log_stream_name  # one execution environment
    assert 0 < first.get_remaining_time_in_millis() <= 20_000


def test_response_headers_merge_and_default_to_json(endpoint, recorder):
    recorder.response = {
        "statusCode": 201,
        "headers": {"X-One": "1", "X-Both": "single"},
        "multiValueHeaders": {"X-Both": ["multi-a", "multi-b"]},
        "body": "{}",
    }

    response = request(endpoint, "GET", "/health")

    assert response.status == 201
    assert response.getheader("X-One") == "1"
    assert response.headers.get_all("X-Both") == ["multi-a", "multi-b", "single"]
    assert response.getheader("Content-Type") == "application/json"


def test_base64_responses_are_decoded_only_when_the_client_accepts_a_binary_type(endpoint, recorder):
    payload = b"\x89PNG\r\n\x1a\n-not-really"
    recorder.response = {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(payload).decode(),
        "isBase64Encoded": True,
    }

    binary = request(endpoint, "GET", "/health", headers={"Accept": "image/png"})
    text = request(endpoint, "GET", "/health", headers={"Accept": "application/json, image/png"})

    assert binary.body == payload
    assert text.body == base64.b64encode(payload)


@pytest.mark.parametrize(
    "bad_response",
    [
        None,
        "a string",
        {"body": "{}"},
        {"statusCode": "200"},
        {"statusCode": 200, "body": {"not": "a string"}},
    ],
)
def test_malformed_proxy_responses_become_api_gateways_502(endpoint, recorder, bad_response):
    recorder.response = bad_response

    response = request(endpoint, "GET", "/health")

    assert response.status == 502
    assert json.loads(response.body) == {"message": "Internal server error"}


def test_a_handler_exception_is_a_502_without_the_stack_trace(endpoint, recorder, access_log):
    recorder.response = RuntimeError("secret internals")

    response = request(endpoint, "GET", "/health")

    assert response.status == 502
    assert b"secret internals" not in response.body and b"Traceback" not in response.body
    (error,) = [line for line in access_log if line.get("level") == "ERROR"]  # the log keeps the cause
    assert error["errorMessage"] == "secret internals" and "Traceback" in "".join(error["stackTrace"])


def test_a_body_over_10_mb_is_refused_before_the_handler_runs(endpoint, recorder):
    response = request(
        endpoint, "POST", "/predict", b"x" * (10 * 1024 * 1024 + 1), {"Content-Type": "image/png"}
    )

    assert response.status == 413
    assert json.loads(response.body)["error"]["code"] == "payload_too_large"
    assert recorder.calls == []


def test_an_event_over_lambdas_6_mb_is_refused_before_the_handler_runs(endpoint, recorder):
    # 5 MB of image bytes: under API Gateway's 10 MB, but about 6.7 MB once base64-encoded.
    response = request(
        endpoint, "POST", "/predict", b"\xff" * (5 * 1024 * 1024), {"Content-Type": "image/jpeg"}
    )

    assert response.status == 413
    assert "Lambda accepts at most" in json.loads(response.body)["error"]["message"]
    assert recorder.calls == []


def test_chunked_bodies_are_read_whole(endpoint, recorder):
    connection = http.client.HTTPConnection(*endpoint.server_address[:2], timeout=10)
    connection.request(
        "POST", "/predict", body=iter([b'{"ima', b'ge": "x"}']), headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )  # fmt: skip
    assert connection.getresponse().status == 200
    connection.close()

    assert recorder.event["body"] == '{"image": "x"}'


def test_an_invalid_content_length_is_a_json_400(endpoint, recorder):
    connection = http.client.HTTPConnection(*endpoint.server_address[:2], timeout=10)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Length", "-5")
    connection.endheaders()
    response = connection.getresponse()

    assert response.status == 400
    assert json.loads(response.read())["error"]["code"] == "bad_request"
    assert recorder.calls == []


def test_each_request_gets_one_access_log_line_with_the_stage_fields(endpoint, access_log):
    response = request(endpoint, "POST", "/predict?top_k=1", b"{}", {"Content-Type": "application/json"})

    wait_for(lambda: access_log)
    (line,) = access_log
    assert line["requestId"] == response.getheader("x-amzn-RequestId")
    assert (line["httpMethod"], line["resourcePath"], line["status"]) == ("POST", "/predict", 200)
    assert line["ip"] == "127.0.0.1" and line["responseLength"] == len(response.body)
    assert line["integrationLatency"] is not None


def test_stage_matches_the_deployed_api():
    from stacks.inference_api import STAGE_NAME

    assert gateway.DEFAULT_STAGE == STAGE_NAME


def test_method_tokens_are_case_sensitive_so_get_is_not_get(endpoint, recorder):
    with socket.create_connection(endpoint.server_address[:2], timeout=10) as connection:
        connection.sendall(b"get /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        answer.read()

    # the function sees the token as sent (and its router answers 405: see tests/runtime)
    assert recorder.event["httpMethod"] == "get"


def _trickle(connection: socket.socket, data: bytes, interval_s: float, stop: threading.Event) -> None:
    for index in range(len(data)):
        if stop.is_set():
            return
        try:
            connection.sendall(data[index : index + 1])
        except OSError:
            return
        time.sleep(interval_s)


@pytest.mark.parametrize(
    ("sent_at_once", "trickled", "bound"),
    [
        (b"GET /health HTTP/1.1\r\n", b"X-Slow: " + b"a" * 100 + b"\r\n\r\n", "head"),
        (b"GE", b"T /health HTTP/1.1\r\n\r\n" + b" " * 100, "head"),
        (b"POST /predict HTTP/1.1\r\nContent-Length: 200\r\n\r\n", b"x" * 200, "whole"),
    ],
    ids=["header bytes", "request line bytes", "body bytes"],
)
def test_a_client_trickling_its_request_is_cut_off_with_a_408_within_the_bound(
    recorder, access_log, sent_at_once, trickled, bound
):
    # Given a server whose bounds are short for the test (10 s and 60 s by default)
    head_bound_s, whole_bound_s = 1.0, 2.5
    server = LocalEndpoint(
        ("127.0.0.1", 0),
        recorder,
        log=access_log.append,
        request_head_bound_s=head_bound_s,
        request_bound_s=whole_bound_s,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stop = threading.Event()
    try:
        with socket.create_connection(server.server_address[:2], timeout=30) as connection:
            # When a client sends a byte every 0.2 s (no read timeout ever trips)
            started = time.monotonic()
            connection.sendall(sent_at_once)
            sender = threading.Thread(target=_trickle, args=(connection, trickled, 0.2, stop), daemon=True)
            sender.start()
            answer = http.client.HTTPResponse(connection)
            answer.begin()
            body = json.loads(answer.read())
            elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    # Then it gets a JSON 408 once the bound has passed, and the function never ran
    expected_s = head_bound_s if bound == "head" else whole_bound_s
    assert answer.status == 408, body
    assert body["error"]["code"] == "bad_request" and "not sent in time" in body["error"]["message"]
    assert expected_s <= elapsed <= expected_s + 1.5, elapsed
    assert recorder.calls == []


def test_the_default_bounds_on_sending_a_request() -> None:
    from local_endpoint.server import REQUEST_BOUND_S, REQUEST_HEAD_BOUND_S

    assert (REQUEST_HEAD_BOUND_S, REQUEST_BOUND_S) == (10.0, 60.0)
