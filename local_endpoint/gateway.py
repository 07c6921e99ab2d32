"""What API Gateway does around the function: HTTP request -> proxy event, proxy response -> HTTP.

This mimics a Regional REST API with Lambda proxy integrations (payload format 1.0):

- The event carries the path, method, headers (as sent, last value per name) and
  `multiValueHeaders`, the query string (`null` when there is none), a request
  context with a fresh request id, and the body: base64 with `isBase64Encoded: true`
  when the request's Content-Type matches one of the API's binary media types,
  otherwise UTF-8 text (`null` when empty).
- API Gateway answers some requests itself and never invokes the function: a body
  over 10 MB (413), an event over Lambda's 6 MB invoke limit (413), a function that
  fails or returns a malformed proxy response (502 `{"message": "Internal server
  error"}`). The real 413 bodies are API Gateway's own (`HTTP content length exceeded
  10485760 bytes.`, `{"message": "Request Too Long"}`); here they use the API's JSON
  error shape so every 4xx a client sees locally reads the same.
- Routing is the handler's job here: every path and method is forwarded (with
  `resource` set to the path), and the handler's router answers unknown routes with
  404 and wrong methods with 405. The deployed API differs on purpose in two ways
  (stacks/inference_api.py): it has only `POST /predict` and `GET /health`, so API
  Gateway answers any other route itself with 403 `MISSING_AUTHENTICATION_TOKEN`,
  and it validates JSON bodies of `/predict` against its request model (400
  `BAD_REQUEST_BODY`). Locally the handler's own checks answer those requests.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from lambda_src.contract import (
    API_GATEWAY_MAX_BODY_BYTES,
    IMAGE_MEDIA_TYPES,
    JSON_MEDIA_TYPE,
    LAMBDA_MAX_PAYLOAD_BYTES,
)
from lambda_src.errors import ApiError, PayloadTooLarge

# The deployed API's binary media types are IMAGE_MEDIA_TYPES. `*/*` is deliberately not one:
# JSON bodies reach the function as plain text.
DEFAULT_STAGE = "v1"
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_API_ID = "local"

# API Gateway computes these itself; whatever the function says about them is ignored.
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as it arrived at the server."""

    method: str
    target: str  # path and query string, as on the request line
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The last value of header `name` (any case), or None."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[-1] if values else None


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP response to write back to the client."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class MalformedProxyResponse(Exception):
    """The function's return value is not a valid Lambda proxy response."""


def media_type(content_type: str | None) -> str:
    """`image/PNG; charset=x` -> `image/png`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def matches_binary_media_type(content_type: str | None, binary_media_types: Iterable[str]) -> bool:
    """Whether API Gateway treats a body of this Content-Type as binary (wildcards allowed)."""
    kind, _, subtype = media_type(content_type).partition("/")
    if not kind or not subtype:
        return False
    for pattern in binary_media_types:
        pattern_kind, _, pattern_subtype = pattern.lower().partition("/")
        if pattern_kind in {"*", kind} and pattern_subtype in {"*", subtype}:
            return True
    return False


def _headers(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _query(query_string: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not query_string:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        single[name] = value
        multi.setdefault(name, []).append(value)
    return (single, multi) if single else (None, None)


def _body(request: HttpRequest, binary_media_types: Iterable[str]) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    if matches_binary_media_type(request.header("Content-Type"), binary_media_types):
        return base64.b64encode(request.body).decode("ascii"), True
    # API Gateway passes text payloads on as UTF-8; bytes that are not UTF-8 get mangled.
    return request.body.decode("utf-8", errors="replace"), False


def _trace_id(now_s: float) -> str:
    return f"Root=1-{int(now_s):08x}-{secrets.token_hex(12)}"


def build_event(
    request: HttpRequest,
    *,
    request_id: str,
    now_s: float,
    server_port: int,
    stage: str = DEFAULT_STAGE,
    binary_media_types: Iterable[str] = IMAGE_MEDIA_TYPES,
) -> dict[str, Any]:
    """The API Gateway REST proxy event (payload v1) for `request`."""
    url = urlsplit(request.target)
    path = unquote(url.path) or "/"
    host = request.header("Host") or "127.0.0.1"
    user_agent = request.header("User-Agent")
    forwarded = [*request.headers]
    forwarded_for = request.header("X-Forwarded-For")
    forwarded.append(
        ("X-Forwarded-For", f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip)
    )
    forwarded += [
        ("X-Forwarded-Port", str(server_port)),
        ("X-Forwarded-Proto", "http"),
        ("X-Amzn-Trace-Id", _trace_id(now_s)),
    ]
    headers, multi_value_headers = _headers(forwarded)
    query, multi_value_query = _query(url.query)
    body, is_base64 = _body(request, binary_media_types)
    return {
        "resource": path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_value_query,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": secrets.token_hex(3),
            "resourcePath": path,
            "httpMethod": request.method,
            "extendedRequestId": base64.b64encode(secrets.token_bytes(12)).decode("ascii"),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_s)),
            "path": f"/{stage}{path}",
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": request.protocol,
            "stage": stage,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": int(now_s * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "domainName": host,
            "deploymentId": LOCAL_API_ID,
            "apiId": LOCAL_API_ID,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def new_request_id() -> str:
    return str(uuid.uuid4())


def _merged_headers(proxy_response: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`multiValueHeaders` and `headers` merged the way API Gateway merges them."""
    single = proxy_response.get("headers") or {}
    multi = proxy_response.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise MalformedProxyResponse("headers and multiValueHeaders must be objects")
    merged: dict[str, list[str]] = {}
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{name!r}] must be a list")
        merged[str(name)] = [str(value) for value in values]
    for name, value in single.items():
        if isinstance(value, (dict, list)):
            raise MalformedProxyResponse(f"headers[{name!r}] must be a string")
        values = merged.setdefault(str(name), [])
        if str(value) not in values:
            values.append(str(value))
    return [(name, value) for name, values in merged.items() for value in values]


def _accepts_binary(accept: str | None, binary_media_types: Iterable[str]) -> bool:
    # API Gateway looks only at the first media type of the request's Accept header.
    first = (accept or "").split(",", 1)[0]
    return matches_binary_media_type(first, binary_media_types)


def to_http_response(
    proxy_response: Any,
    *,
    request_id: str,
    accept: str | None,
    binary_media_types: Iterable[str] = IMAGE_MEDIA_TYPES,
) -> HttpResponse:
    """The HTTP response API Gateway sends for the function's proxy response."""
    if not isinstance(proxy_response, dict):
        raise MalformedProxyResponse(f"the function returned {type(proxy_response).__name__}, not an object")
    status = proxy_response.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedProxyResponse(f"statusCode must be an integer HTTP status, got {status!r}")
    body = proxy_response.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedProxyResponse(f"body must be a string, got {type(body).__name__}")
    raw = (body or "").encode("utf-8")
    if proxy_response.get("isBase64Encoded") and _accepts_binary(accept, binary_media_types):
        try:
            raw = base64.b64decode(body or "", validate=True)
        except binascii.Error as error:
            raise MalformedProxyResponse(
                f"isBase64Encoded is true but the body is not base64: {error}"
            ) from None
    headers = [
        (name, value) for name, value in _merged_headers(proxy_response) if name.lower() not in _HOP_BY_HOP
    ]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", JSON_MEDIA_TYPE))  # API Gateway's default
    headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status, headers, raw)


def error_response(error: ApiError, request_id: str) -> HttpResponse:
    """An error API Gateway answers itself, in the API's JSON error shape."""
    body = json.dumps({"error": {"code": error.code, "message": error.message}}).encode("utf-8")
    return HttpResponse(
        error.status, [("Content-Type", JSON_MEDIA_TYPE), ("x-amzn-RequestId", request_id)], body
    )


def body_too_large(size: int, request_id: str) -> HttpResponse:
    """API Gateway's 413 for a request body over 10 MB."""
    return error_response(
        PayloadTooLarge(
            f"the request body is {size} bytes; API Gateway takes at most {API_GATEWAY_MAX_BODY_BYTES} bytes"
        ),
        request_id,
    )


def event_too_large(size: int, request_id: str) -> HttpResponse:
    """API Gateway's 413 when Lambda refuses an invoke payload over 6 MB."""
    return error_response(
        PayloadTooLarge(
            f"the request is {size} bytes once wrapped in the Lambda event (base64 makes binary bodies "
            f"a third larger); Lambda accepts at most {LAMBDA_MAX_PAYLOAD_BYTES} bytes"
        ),
        request_id,
    )


def internal_server_error(request_id: str) -> HttpResponse:
    """API Gateway's 502 when the function fails or answers something that is not a proxy response."""
    return HttpResponse(
        502,
        [
            ("Content-Type", JSON_MEDIA_TYPE),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", "InternalServerErrorException"),
        ],
        b'{"message": "Internal server error"}',
    )
