"""The endpoint client against a real HTTP server on 127.0.0.1 that records what arrives."""

from __future__ import annotations

import base64
import datetime
import io
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from PIL import Image

from endpoint_client.cli import main
from endpoint_client.client import (
    EndpointError,
    format_predictions,
    health,
    image_content_type,
    predict,
    region_from_url,
)
from lambda_src.contract import API_KEY_HEADER, IMAGE_MEDIA_TYPES, AuthMode
from model_training.cli import main as model_training_main

ANSWER = {
    "model": {"name": "demo-shapes", "version": "v3"},
    "top_k": 2,
    "results": [
        {
            "predictions": [
                {"label": "circle", "index": 0, "score": 0.875},
                {"label": "square", "index": 2, "score": 0.125},
            ]
        }
    ],
}
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example")
SIGNING_TIME = datetime.datetime(2026, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class RecordingServer:
    """What the server received, and what it answers next (status, body bytes)."""

    url: str
    received: list[Received] = field(default_factory=list)
    answer: tuple[int, bytes] = (200, json.dumps(ANSWER).encode())


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    recording = RecordingServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {name.lower(): value for name, value in self.headers.items()}
            recording.received.append(Received(self.command, self.path, headers, body))
            status, payload = recording.answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    recording.url = f"http://127.0.0.1:{http.server_address[1]}/prod/"
    yield recording
    http.shutdown()
    http.server_close()


def image_file(folder: Path, image_format: str = "PNG", name: str = "circle.png") -> Path:
    path = folder / name
    Image.new("RGB", (40, 40), (200, 30, 30)).save(path, format=image_format)
    return path


def test_raw_bytes_go_with_the_image_content_type(server: RecordingServer, tmp_path: Path) -> None:
    path = image_file(tmp_path)
    response = predict(server.url, path, top_k=2)
    [request] = server.received
    assert (request.method, request.path) == ("POST", "/prod/predict?top_k=2")
    assert request.headers["content-type"] == "image/png"
    assert request.body == path.read_bytes()
    assert "authorization" not in request.headers and "x-api-key" not in request.headers
    assert response == ANSWER


def test_the_json_format_sends_the_image_as_base64(server: RecordingServer, tmp_path: Path) -> None:
    path = image_file(tmp_path)
    predict(server.url + "predict", path, as_json=True)
    [request] = server.received
    assert request.path == "/prod/predict"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"image": base64.b64encode(path.read_bytes()).decode()}


@pytest.mark.parametrize(
    ("image_format", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_the_content_type_comes_from_the_image_bytes(image_format: str, content_type: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format=image_format)
    assert image_content_type(buffer.getvalue()) == content_type


def test_sniffing_names_every_media_type_the_api_accepts_and_nothing_else() -> None:
    samples = {}
    for image_format in ("JPEG", "PNG", "WEBP"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format=image_format)
        samples[image_format] = image_content_type(buffer.getvalue())
    assert sorted(samples.values()) == sorted(IMAGE_MEDIA_TYPES)
    with pytest.raises(EndpointError):
        image_content_type(b"RIFF\x24\x00\x00\x00WAVEfmt ")  # a RIFF container, but sound


def test_a_file_of_another_format_is_refused_unless_a_content_type_is_given(
    server: RecordingServer, tmp_path: Path
) -> None:
    path = image_file(tmp_path, "GIF", "picture.gif")
    with pytest.raises(EndpointError, match="not a JPEG, PNG or WebP"):
        predict(server.url, path)
    assert server.received == []
    predict(server.url, path, content_type="image/gif")
    assert server.received[0].headers["content-type"] == "image/gif"


def test_the_api_key_goes_in_x_api_key(server: RecordingServer, tmp_path: Path) -> None:
    predict(server.url, image_file(tmp_path), auth=AuthMode.API_KEY, api_key="key-123")
    assert server.received[0].headers["x-api-key"] == "key-123"
    with pytest.raises(EndpointError, match="needs a key"):
        predict(server.url, image_file(tmp_path), auth=AuthMode.API_KEY)


def test_the_first_releases_api_key_spelling_still_works_with_a_warning(
    server: RecordingServer, tmp_path: Path
) -> None:
    with pytest.warns(DeprecationWarning, match="'api-key' is deprecated: use 'api_key'"):
        predict(server.url, image_file(tmp_path), auth="api-key", api_key="key-123")
    assert server.received[0].headers[API_KEY_HEADER] == "key-123"
    with pytest.raises(EndpointError, match="auth must be one of iam, api_key, none, got 'apikey'"):
        predict(server.url, image_file(tmp_path), auth="apikey")


def expected_authorization(server: RecordingServer, request: Received) -> str:
    """What botocore signs for the request exactly as it arrived (same signed headers, body, time)."""
    signed = request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    added_by_signer = {"host", "x-amz-date", "x-amz-security-token"}
    headers = {name: request.headers[name] for name in signed if name not in added_by_signer}
    origin = server.url.removesuffix("/prod/")
    aws_request = AWSRequest(
        method=request.method, url=origin + request.path, data=request.body, headers=headers
    )
    SigV4Auth(CREDENTIALS, "execute-api", "eu-west-1").add_auth(aws_request)
    return str(aws_request.headers["Authorization"])


@pytest.mark.parametrize("as_json", [False, True], ids=["raw", "json"])
def test_the_sigv4_signature_is_what_botocore_computes(
    server: RecordingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    # Given fixed credentials and a fixed clock
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: SIGNING_TIME)
    # When the client sends a signed request
    predict(
        server.url,
        image_file(tmp_path),
        as_json=as_json,
        top_k=3,
        auth=AuthMode.IAM,
        region="eu-west-1",
        credentials=CREDENTIALS,
    )
    [request] = server.received
    # Then the signature on the wire is botocore's for that same request
    assert request.headers["authorization"] == expected_authorization(server, request)
    assert request.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/eu-west-1/execute-api/aws4_request, "
    )
    assert request.headers["x-amz-date"] == "20260102T030405Z"
    assert request.headers["x-amz-security-token"] == "session-token-example"
    # and it covers the body and the content type: a changed body would not verify
    assert "content-type" in request.headers["authorization"]
    tampered = Received(request.method, request.path, request.headers, request.body + b"x")
    assert expected_authorization(server, tampered) != request.headers["authorization"]


def test_health_takes_the_same_signed_path_as_predict(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given fixed credentials and a fixed clock
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: SIGNING_TIME)
    server.answer = (200, json.dumps({"status": "ok", "model": ANSWER["model"]}).encode())
    # When the client asks for the health of a signed API
    answer = health(server.url, auth=AuthMode.IAM, region="eu-west-1", credentials=CREDENTIALS)
    [request] = server.received
    # Then it is a GET of /health carrying botocore's signature for it, and the answer is the JSON
    assert (request.method, request.path, request.body) == ("GET", "/prod/health", b"")
    assert request.headers["authorization"] == expected_authorization(server, request)
    assert request.headers["accept"] == "application/json"
    assert answer == {"status": "ok", "model": ANSWER["model"]}


def test_a_failing_health_check_raises_the_servers_code_and_message(server: RecordingServer) -> None:
    server.answer = (503, b'{"error": {"code": "model_unavailable", "message": "LATEST is missing"}}')
    with pytest.raises(EndpointError) as raised:
        health(server.url, auth=AuthMode.API_KEY, api_key="key-123")
    assert (raised.value.status, raised.value.code, raised.value.detail) == (
        503,
        "model_unavailable",
        "LATEST is missing",
    )
    assert server.received[0].headers[API_KEY_HEADER] == "key-123"


def test_the_region_comes_from_an_execute_api_url() -> None:
    assert (
        region_from_url("https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod/") == "ap-southeast-2"
    )
    assert region_from_url("https://api.example.com/predict") is None


def test_iam_auth_without_credentials_says_so(
    server: RecordingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(EndpointError, match="needs AWS credentials"):
        predict(server.url, image_file(tmp_path), auth=AuthMode.IAM, region="eu-west-1")
    assert server.received == []


def test_an_error_answer_carries_the_servers_message(server: RecordingServer, tmp_path: Path) -> None:
    error = {
        "error": {"code": "unsupported_media_type", "message": "send image/jpeg, image/png or image/webp"}
    }
    server.answer = (415, json.dumps(error).encode())
    with pytest.raises(EndpointError) as raised:
        predict(server.url, image_file(tmp_path))
    assert (raised.value.status, raised.value.code) == (415, "unsupported_media_type")
    assert "send image/jpeg, image/png or image/webp" in raised.value.message


def test_api_gateways_own_403_gets_an_auth_hint(server: RecordingServer, tmp_path: Path) -> None:
    server.answer = (403, b'{"message":"Missing Authentication Token"}')
    with pytest.raises(
        EndpointError, match=r"403: Missing Authentication Token \(the API may need --auth iam"
    ):
        predict(server.url, image_file(tmp_path))


def test_an_unreachable_endpoint_is_a_readable_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EndpointError, match="cannot reach"):
        predict(f"http://127.0.0.1:{port}/", image_file(tmp_path))


def test_the_predict_command_prints_the_ranking(
    server: RecordingServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["predict", server.url, str(image_file(tmp_path)), "--top-k", "2", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        "model demo-shapes version v3",
        "  1. circle               0.8750",
        "  2. square               0.1250",
    ]
    assert out.strip() == format_predictions(ANSWER)
    assert server.received[0].headers["content-type"] == "application/json"


def test_the_predict_command_exits_non_zero_with_the_servers_message(
    server: RecordingServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.answer = (413, b'{"error": {"code": "payload_too_large", "message": "the body is over 6 MB"}}')
    code = main(["predict", server.url, str(image_file(tmp_path))])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == "error: the endpoint answered 413 payload_too_large: the body is over 6 MB\n"
    assert captured.out == ""


def test_model_trainings_predict_alias_runs_the_same_command(
    server: RecordingServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the first release's spelling of the command and of the auth mode
    code = model_training_main(
        ["predict", server.url, str(image_file(tmp_path)), "--auth", "api-key", "--api-key", "key-123"]
    )
    captured = capsys.readouterr()
    # Then the request goes out with the key, the answer is printed, and a note says what to type now
    assert code == 0
    assert captured.out.strip() == format_predictions(ANSWER)
    assert captured.err == "note: --auth api-key is deprecated, use --auth api_key\n"
    assert server.received[0].headers[API_KEY_HEADER] == "key-123"
