"""The local endpoint end to end: its own process, real HTTP with curl, the real handler and model."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MODEL_NAME, curl, top_labels

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def post_file(url: str, content_type: str, path: Path, query: str = "") -> tuple[int, Any]:
    """`curl -H 'Content-Type: ...' --data-binary @file <url>/predict`, as the API page shows."""
    return curl("-H", f"Content-Type: {content_type}", "--data-binary", f"@{path}", f"{url}/predict{query}")


def assert_same_ranking(predictions, expected_ranking):
    """The served ranking is the model's own: same labels in the same order, same scores."""
    assert top_labels(predictions) == [label for label, _ in expected_ranking[: len(predictions)]]
    for prediction, (_, score) in zip(predictions, expected_ranking, strict=False):
        assert prediction["score"] == pytest.approx(score, abs=1e-4)


def test_health_reports_the_published_version(server, published_version):
    status, body = curl(f"{server.url}/health")

    assert status == 200
    assert body["model"]["name"] == MODEL_NAME
    assert body["model"]["version"] == published_version


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp"])
def test_raw_image_files_get_the_models_classes(server, examples, expected, published_version, image_format):
    for path in examples[image_format]:
        status, body = curl(
            "-H",
            f"Content-Type: {CONTENT_TYPES[image_format]}",
            "--data-binary",
            f"@{path}",
            f"{server.url}/predict",
        )

        assert status == 200, body
        assert body["model"] == {"name": MODEL_NAME, "version": published_version}
        (result,) = body["results"]
        assert_same_ranking(result["predictions"], expected(path))


def test_json_base64_gets_the_same_classes_with_top_k(server, examples, expected, tmp_path):
    path = examples["jpeg"][0]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"image": base64.b64encode(path.read_bytes()).decode()}))

    status, body = curl(
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        f"@{request}",
        f"{server.url}/predict?top_k=2",
    )

    assert status == 200, body
    (result,) = body["results"]
    assert len(result["predictions"]) == 2
    assert_same_ranking(result["predictions"], expected(path))


def test_a_json_batch_gets_one_result_per_image_in_order(server, examples, expected, tmp_path):
    paths = examples["png"]
    request = tmp_path / "batch.json"
    request.write_text(json.dumps({"images": [base64.b64encode(p.read_bytes()).decode() for p in paths]}))

    status, body = curl(
        "-H", "Content-Type: application/json", "--data-binary", f"@{request}", f"{server.url}/predict"
    )

    assert status == 200, body
    assert len(body["results"]) == len(paths)
    for result, path in zip(body["results"], paths, strict=True):
        assert_same_ranking(result["predictions"], expected(path))


def big_file(folder: Path, size: int) -> Path:
    path = folder / f"big-{size}.bin"
    path.write_bytes(b"\xff\xd8\xff" + bytes(size - 3))
    return path


JSON = "Content-Type: application/json"
PNG = "Content-Type: image/png"
GIF = "Content-Type: image/gif"
TEXT = "Content-Type: text/plain"


@pytest.mark.parametrize(
    ("curl_args", "query", "status", "code"),
    [
        pytest.param(["-H", JSON, "-d", '{"image": '], "", 400, "bad_request", id="bad-json"),
        pytest.param(["-H", JSON, "-d", '{"picture": "x"}'], "", 400, "bad_request", id="no-image"),
        pytest.param(["-H", PNG, "--data-binary", "just text"], "", 400, "bad_request", id="not-an-image"),
        pytest.param(["-H", PNG, "--data-binary", "x"], "?top_k=zero", 400, "bad_request", id="bad-top-k"),
        pytest.param(["-H", GIF, "--data-binary", "GIF89a"], "", 415, "unsupported_media_type", id="gif"),
        pytest.param(["-H", TEXT, "--data-binary", "abc"], "", 415, "unsupported_media_type", id="text"),
    ],
)  # fmt: skip
def test_bad_predict_requests_get_their_4xx_json_error(server, curl_args, query, status, code):
    got_status, body = curl("-X", "POST", *curl_args, f"{server.url}/predict{query}")

    assert (got_status, body["error"]["code"]) == (status, code), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]


def test_unknown_route_is_404_and_wrong_method_is_405(server):
    status, body = curl(f"{server.url}/no-such-route")
    assert (status, body["error"]["code"]) == (404, "not_found")

    status, body = curl("-X", "DELETE", f"{server.url}/health")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")

    status, body = curl(f"{server.url}/predict")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")

    for method in ("TRACE", "PROPFIND", "BREW"):  # methods http.server has no do_ for, any token
        status, body = curl("-X", method, f"{server.url}/predict")
        assert (status, body["error"]["code"]) == (405, "method_not_allowed"), method


def test_a_body_over_api_gateways_10_mb_is_413(server, tmp_path):
    path = big_file(tmp_path, 10 * 1024 * 1024 + 1)

    status, body = curl(
        "-H", "Content-Type: image/jpeg", "--data-binary", f"@{path}", f"{server.url}/predict"
    )

    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def test_an_image_too_big_for_lambda_once_base64_encoded_is_413(server, tmp_path):
    # 5 MB is under API Gateway's 10 MB but about 6.7 MB in the event: Lambda refuses it.
    path = big_file(tmp_path, 5 * 1024 * 1024)

    status, body = curl(
        "-H", "Content-Type: image/jpeg", "--data-binary", f"@{path}", f"{server.url}/predict"
    )

    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def test_the_server_logs_each_request_once_with_the_handlers_json(server):
    status, _ = curl("-H", "X-Trace-Me: yes", f"{server.url}/health")
    assert status == 200

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if "resourcePath" in line and line["resourcePath"] == "/health"]
    handler = [line for line in lines if line.get("message") == "request" and line.get("route") == "/health"]
    assert access and handler
    # The access log's request id is the one API Gateway put in the event the handler logged.
    assert access[-1]["requestId"] in {line["api_request_id"] for line in handler}
