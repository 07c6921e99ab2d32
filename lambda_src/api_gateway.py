"""API Gateway REST proxy events (payload format 1.0) in, proxy responses out.

Nothing here knows about models: it turns an event of any shape into an `ApiRequest`
(or a 400), reads the body within a size limit, and builds JSON responses.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lambda_src.contract import IMAGE_MEDIA_TYPES, JSON_MEDIA_TYPE
from lambda_src.errors import ApiError, BadRequest, PayloadTooLarge

_RESPONSE_HEADERS = {
    "Content-Type": JSON_MEDIA_TYPE,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class ApiRequest:
    """The parts of a proxy event the API uses; header names are lower case."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    is_base64_encoded: bool = False
    request_id: str = ""

    def media_type(self) -> str | None:
        """Content-Type without parameters, lower case (`Image/PNG; q=1` -> `image/png`), or None."""
        raw = self.headers.get("content-type", "")
        kind = raw.split(";", 1)[0].strip().lower()
        return kind or None


def parse_event(event: object) -> ApiRequest:
    """The request in a REST proxy event; BadRequest if `event` is not one."""
    if not isinstance(event, Mapping):
        raise BadRequest("the event is not an API Gateway proxy request")
    method = event.get("httpMethod")
    if not isinstance(method, str) or not method:
        raise BadRequest("the event has no httpMethod")
    body = event.get("body")
    if body is not None and not isinstance(body, str):
        raise BadRequest("the event's body must be a string or null")
    is_base64_encoded = event.get("isBase64Encoded", False)
    if not isinstance(is_base64_encoded, bool):
        raise BadRequest("the event's isBase64Encoded must be true or false")
    return ApiRequest(
        method=method,  # method tokens are case-sensitive (RFC 9110): `get` is not GET
        path=_route_path(event),
        headers=_headers(event),
        query=_query(event),
        body=body,
        is_base64_encoded=is_base64_encoded,
        request_id=_request_id(event),
    )


def _route_path(event: Mapping[str, Any]) -> str:
    """The API resource the request was sent to, without a trailing slash.

    `resource` is the template API Gateway matched (`/predict`), independent of stage
    and custom-domain base paths; a proxy resource (`/{proxy+}`) falls back to `path`.
    """
    resource, path = event.get("resource"), event.get("path")
    chosen = resource if isinstance(resource, str) and resource and "{" not in resource else path
    if not isinstance(chosen, str) or not chosen:
        raise BadRequest("the event has no path")
    return chosen.rstrip("/") or "/"


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Header values by lower-case name; `headers` wins over `multiValueHeaders` (last value)."""
    merged: dict[str, str] = {}
    multi = event.get("multiValueHeaders")
    if multi is not None:
        if not isinstance(multi, Mapping):
            raise BadRequest("the event's multiValueHeaders must be an object")
        for name, values in multi.items():
            if isinstance(values, list) and values and isinstance(values[-1], str) and isinstance(name, str):
                merged[name.lower()] = values[-1]
    single = event.get("headers")
    if single is not None:
        if not isinstance(single, Mapping):
            raise BadRequest("the event's headers must be an object")
        for name, value in single.items():
            if isinstance(name, str) and isinstance(value, str):
                merged[name.lower()] = value
    return merged


def _query(event: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters; like API Gateway, the last value of a repeated name counts."""
    query: dict[str, str] = {}
    multi = event.get("multiValueQueryStringParameters")
    if isinstance(multi, Mapping):
        for name, values in multi.items():
            if isinstance(values, list) and values and isinstance(values[-1], str) and isinstance(name, str):
                query[name] = values[-1]
    single = event.get("queryStringParameters")
    if single is not None:
        if not isinstance(single, Mapping):
            raise BadRequest("the event's queryStringParameters must be an object")
        for name, value in single.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise BadRequest("query parameters must be strings")
            query[name] = value
    return query


def _request_id(event: Mapping[str, Any]) -> str:
    context = event.get("requestContext")
    request_id = context.get("requestId") if isinstance(context, Mapping) else None
    return request_id if isinstance(request_id, str) else ""


def read_body(request: ApiRequest, *, max_bytes: int) -> bytes:
    """The body's bytes as the client sent them, whatever its media type; size-checked first.

    The size counts the body as received (base64 included), before anything is decoded.
    A text body of a binary media type (an image sent without base64) carries one byte per
    character; any other text body arrived decoded from UTF-8 and is encoded back the same way.
    """
    body = request.body or ""
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"the request body is {len(body):,} bytes as sent (base64 included); the limit is {max_bytes:,}"
        )
    if request.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the request body is marked base64-encoded but is not valid base64") from None
    if request.media_type() in IMAGE_MEDIA_TYPES:  # the API's binary media types
        try:
            return body.encode("latin-1")
        except UnicodeEncodeError:
            pass  # characters past one byte: it was text after all
    return body.encode("utf-8", errors="surrogatepass")


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A proxy response with a JSON body: strict JSON (a NaN or infinity is a ValueError, never sent)."""
    return {
        "statusCode": status,
        "headers": {**_RESPONSE_HEADERS, **(headers or {})},
        "body": json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        "isBase64Encoded": False,
    }


def error_response(
    error: ApiError, headers: Mapping[str, str] | None = None, *, message: str | None = None
) -> dict[str, Any]:
    """`{"error": {"code", "message"}}` with the error's status (and its `reason`, if it has one)."""
    body: dict[str, str] = {"code": error.code, "message": message if message is not None else error.message}
    if error.reason is not None:
        body["reason"] = error.reason
    return json_response(error.status, {"error": body}, headers)
