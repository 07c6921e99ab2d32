"""Bad input gets a 4xx JSON error a person understands; no input produces a 5xx or an exception."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_src.contract import LAMBDA_MAX_PAYLOAD_BYTES
from lambda_src.service import InferenceService
from tests.support.events import api_gateway_event, body_of, json_event
from tests.support.images import b64, coloured_image, encode

PNG = encode(coloured_image("red", seed=20), "PNG")
JPEG = encode(coloured_image("green", seed=21), "JPEG")
WEBP = encode(coloured_image("blue", seed=22), "WEBP")
GIF = encode(coloured_image("red", seed=23), "GIF")
BMP = encode(coloured_image("red", seed=24), "BMP")


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header declaring `width` x `height` greyscale pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def predict_raw(data: bytes | str, content_type: str | None = "image/png", **options: Any) -> dict[str, Any]:
    return api_gateway_event("POST", "/predict", body=data, content_type=content_type, **options)


BAD_REQUESTS: dict[str, tuple[Callable[[], Any], int, str, str]] = {
    # name: (event, status, code, words the message must contain)
    "malformed JSON": (
        lambda: api_gateway_event("POST", "/predict", body='{"image": ', content_type="application/json"),
        400,
        "bad_request",
        "not valid JSON",
    ),
    "JSON nested too deeply": (
        lambda: api_gateway_event("POST", "/predict", body="[" * 100_000, content_type="application/json"),
        400,
        "bad_request",
        "nested too deeply",
    ),
    "JSON that is not an object": (lambda: json_event([b64(PNG)]), 400, "bad_request", "must be an object"),
    "missing image field": (lambda: json_event({"picture": b64(PNG)}), 400, "bad_request", 'no "image"'),
    "image and images together": (
        lambda: json_event({"image": b64(PNG), "images": [b64(PNG)]}),
        400,
        "bad_request",
        "not both",
    ),
    "image of the wrong type": (lambda: json_event({"image": 42}), 400, "bad_request", "not a number"),
    "image null": (lambda: json_event({"image": None}), 400, "bad_request", "not null"),
    "images not a list": (lambda: json_event({"images": b64(PNG)}), 400, "bad_request", "must be a list"),
    "images empty": (lambda: json_event({"images": []}), 400, "bad_request", "is empty"),
    "images item of the wrong type": (
        lambda: json_event({"images": [b64(PNG), {"data": "x"}]}),
        400,
        "bad_request",
        "images[1] must be",
    ),
    "invalid base64": (lambda: json_event({"image": "not*base64!"}), 400, "bad_request", "not valid base64"),
    "base64 without padding": (
        lambda: json_event({"image": b64(PNG).rstrip("=")[:-1]}),
        400,
        "bad_request",
        "base64",
    ),
    "empty image string": (lambda: json_event({"image": ""}), 400, "bad_request", "image is empty"),
    "event body marked base64 but not base64": (
        lambda: {**predict_raw(PNG), "body": "%%%not base64%%%"},
        400,
        "bad_request",
        "not valid base64",
    ),
    "empty body": (lambda: predict_raw(b""), 400, "bad_request", "body is empty"),
    "empty JSON body": (
        lambda: api_gateway_event("POST", "/predict", body="", content_type="application/json"),
        400,
        "bad_request",
        "body is empty",
    ),
    "non-image bytes": (
        lambda: predict_raw(b"hello, this is text"),
        400,
        "bad_request",
        "not a JPEG, PNG or WebP",
    ),
    "non-image bytes in JSON": (
        lambda: json_event({"images": [b64(PNG), b64(b"\x00" * 64)]}),
        400,
        "bad_request",
        "images[1] is not a JPEG",
    ),
    "truncated PNG": (
        lambda: predict_raw(PNG[: len(PNG) // 2]),
        400,
        "bad_request",
        "corrupt or truncated PNG",
    ),
    "truncated JPEG": (
        lambda: predict_raw(JPEG[: len(JPEG) // 2], "image/jpeg"),
        400,
        "bad_request",
        "corrupt or truncated JPEG",
    ),
    "truncated WebP": (
        lambda: predict_raw(WEBP[: len(WEBP) // 2], "image/webp"),
        400,
        "bad_request",
        "corrupt or truncated",
    ),
    "binary body mangled by a text-only API": (
        lambda: predict_raw(PNG.decode("utf-8", errors="replace"), base64_encoded=False),
        400,
        "bad_request",
        "not a JPEG, PNG or WebP",
    ),
    "GIF sent as image/png": (lambda: predict_raw(GIF), 415, "unsupported_media_type", "GIF image"),
    "BMP in JSON": (lambda: json_event({"image": b64(BMP)}), 415, "unsupported_media_type", "BMP image"),
    "Content-Type image/gif": (
        lambda: predict_raw(GIF, "image/gif"),
        415,
        "unsupported_media_type",
        "image/gif",
    ),
    "Content-Type text/plain": (
        lambda: predict_raw("hello", "text/plain"),
        415,
        "unsupported_media_type",
        "text/plain",
    ),
    "no Content-Type": (
        lambda: predict_raw(PNG, None, base64_encoded=True),
        415,
        "unsupported_media_type",
        "no Content-Type",
    ),
    "decompression bomb (Pillow refuses)": (
        lambda: predict_raw(png_header_only(50_000, 50_000)),
        413,
        "payload_too_large",
        "larger than the limit of 40,000,000 pixels",  # the configured limit, not Pillow's 178,956,970
    ),
    "decompression bomb (over the pixel limit)": (
        lambda: predict_raw(png_header_only(7_000, 7_000)),
        413,
        "payload_too_large",
        "49,000,000 pixels",
    ),
    "strip too elongated to resize": (
        lambda: predict_raw(png_header_only(1, 1_000_000)),
        400,
        "bad_request",
        "too elongated",
    ),
    "body over Lambda's 6 MB": (
        lambda: json_event({"image": "A" * LAMBDA_MAX_PAYLOAD_BYTES}),
        413,
        "payload_too_large",
        "limit is 6,291,456",
    ),
    "raw image over 6 MB once base64-encoded": (
        lambda: predict_raw(b"\xff" * (LAMBDA_MAX_PAYLOAD_BYTES * 3 // 4 + 3)),
        413,
        "payload_too_large",
        "base64 included",
    ),
    "too many images": (
        lambda: json_event({"images": [b64(PNG)] * 9}),
        413,
        "payload_too_large",
        "at most 8",
    ),
    "top_k zero": (
        lambda: json_event({"image": b64(PNG)}, query={"top_k": "0"}),
        400,
        "bad_request",
        "top_k",
    ),
    "top_k negative": (
        lambda: json_event({"image": b64(PNG)}, query={"top_k": "-1"}),
        400,
        "bad_request",
        "top_k",
    ),
    "top_k not a number": (
        lambda: json_event({"image": b64(PNG)}, query={"top_k": "three"}),
        400,
        "bad_request",
        "top_k",
    ),
    "top_k fractional": (
        lambda: json_event({"image": b64(PNG)}, query={"top_k": "1.5"}),
        400,
        "bad_request",
        "top_k",
    ),
    "top_k empty": (
        lambda: json_event({"image": b64(PNG)}, query={"top_k": ""}),
        400,
        "bad_request",
        "top_k",
    ),
    "unknown route": (lambda: api_gateway_event("GET", "/predictions"), 404, "not_found", "POST /predict"),
    "root route": (lambda: api_gateway_event("GET", "/"), 404, "not_found", "GET /health"),
    "GET /predict": (lambda: api_gateway_event("GET", "/predict"), 405, "method_not_allowed", "POST only"),
    "POST /health": (lambda: api_gateway_event("POST", "/health"), 405, "method_not_allowed", "GET only"),
    "not an event": (lambda: ["not", "an", "event"], 400, "bad_request", "not an API Gateway proxy request"),
    "event without a method": (lambda: {"path": "/health"}, 400, "bad_request", "httpMethod"),
    "body of the wrong type": (
        lambda: {**api_gateway_event("POST", "/predict"), "body": {"image": "x"}},
        400,
        "bad_request",
        "body",
    ),
    "isBase64Encoded not a boolean": (
        lambda: {**predict_raw(PNG), "isBase64Encoded": "true"},
        400,
        "bad_request",
        "isBase64Encoded",
    ),
}


def assert_json_error(response: dict[str, Any], status: int, code: str) -> str:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["Content-Type"] == "application/json"
    payload = body_of(response)
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message"}
    assert payload["error"]["code"] == code
    assert "Traceback" not in response["body"] and 'File "' not in response["body"]
    message: str = payload["error"]["message"]
    return message


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_input_gets_its_4xx_json_error(service: InferenceService, name: str) -> None:
    build_event, status, code, words = BAD_REQUESTS[name]
    message = assert_json_error(service.handle(build_event()), status, code)
    assert words in message


def test_wrong_method_names_the_allowed_one_in_the_allow_header(service: InferenceService) -> None:
    assert service.handle(api_gateway_event("DELETE", "/predict"))["headers"]["Allow"] == "POST"
    assert service.handle(api_gateway_event("PUT", "/health"))["headers"]["Allow"] == "GET"


def test_the_pixel_limit_is_a_setting(make_service: Callable[..., Any]) -> None:
    tight, _, _ = make_service("colours", max_image_pixels=48 * 48 - 1)
    message = assert_json_error(tight.handle(predict_raw(PNG)), 413, "payload_too_large")
    assert "48x48 = 2,304 pixels; the limit is 2,303" in message


def test_client_errors_are_logged_with_their_code_but_never_the_body(
    service: InferenceService, telemetry
) -> None:
    secret = "c2VjcmV0LXRva2Vu" * 4
    service.handle(json_event({"image": secret + "!"}))
    line = telemetry.logs("request")[-1]
    assert (line["status"], line["error_code"]) == (400, "bad_request")
    assert secret not in telemetry.buffer.getvalue()


# Property-based: anything a client (or a misconfigured integration) can send.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(data: bytes, position: int, patch: bytes, cut: bool) -> bytes:
    position %= max(len(data), 1)
    return data[:position] if cut else data[:position] + patch + data[position + len(patch) :]


image_bytes = st.sampled_from(
    [PNG, JPEG, WEBP, PNG, JPEG, WEBP, GIF, BMP, png_header_only(9_000, 9_000), b""]
)
binary_payloads = (
    image_bytes
    | image_bytes
    | st.builds(
        _mutate, image_bytes, st.integers(0, 10_000), st.binary(min_size=1, max_size=6), st.booleans()
    )
    | st.binary(max_size=80)
)
json_bodies = (
    st.builds(lambda data: json.dumps({"image": b64(data)}), binary_payloads)
    | st.builds(
        lambda items: json.dumps({"images": [b64(d) for d in items]}), st.lists(binary_payloads, max_size=10)
    )
    | json_values.map(json.dumps)
    | st.text(max_size=40)
)
CONTENT_TYPES = [
    "application/json",
    "APPLICATION/JSON; charset=utf-8",
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "text/plain",
    "multipart/form-data; boundary=x",
    ";",
    "",
]


def _mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any]) -> Any:
    """Nine times in ten the usual values, so most events reach the deeper checks."""
    return draw(unusual) if draw(st.integers(0, 9)) == 0 else draw(usual)


@st.composite
def proxy_events(draw: st.DrawFn) -> Any:
    content_type = _mostly(draw, st.sampled_from(CONTENT_TYPES), st.text(max_size=20))
    base64_encoded = draw(st.booleans())
    if content_type.startswith("image/"):
        raw = draw(binary_payloads)
        body: bytes | str = raw if base64_encoded else raw.decode("latin-1")
    else:
        body = draw(json_bodies)
    event = api_gateway_event(
        "POST", "/predict", body=body, content_type=content_type, base64_encoded=base64_encoded
    )
    event["httpMethod"] = _mostly(draw, st.sampled_from(["POST", "POST", "post", "GET"]), st.text(max_size=6))
    path = _mostly(
        draw, st.sampled_from(["/predict", "/predict", "/predict/", "/health"]), st.text(max_size=12)
    )
    event["path"] = event["resource"] = path
    event["queryStringParameters"] = draw(
        st.none() | st.dictionaries(st.sampled_from(["top_k", "x"]), st.text(max_size=6) | st.integers())
    )
    if draw(st.integers(0, 3)) == 0:  # an integration gone wrong: any field may hold anything
        event[draw(st.sampled_from(sorted(event)))] = draw(json_values)
    return event


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=proxy_events() | json_values | st.dictionaries(st.text(max_size=10), json_values))
def test_no_event_produces_a_server_error_or_an_exception(service: InferenceService, event: Any) -> None:
    response = service.handle(event)
    hypothesis.event(f"status {response['statusCode']}")  # --hypothesis-show-statistics shows the mix
    assert 200 <= response["statusCode"] < 500, response["body"]
    assert response["isBase64Encoded"] is False
    payload = json.loads(response["body"])
    if response["statusCode"] >= 400:
        assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message"}
        assert "Traceback" not in response["body"]
    else:
        assert "results" in payload or payload.get("status") == "ok"
