"""API Gateway REST (v1) proxy events as the deployed API sends them, and the answers' bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from lambda_src.contract import IMAGE_MEDIA_TYPES
from tests.support.images import b64


def api_gateway_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    content_type: str | None = None,
    base64_encoded: bool | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    stage: str = "prod",
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event as API Gateway sends it for `method path`.

    Like API Gateway, the body is base64-encoded when the Content-Type is one of the
    API's binary media types, unless `base64_encoded` says otherwise.
    """
    all_headers = {
        "Accept": "*/*",
        "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "User-Agent": "curl/8.5.0",
        "X-Amzn-Trace-Id": "Root=1-65f1c0de-0123456789abcdef01234567",
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    media_type = (content_type or "").split(";")[0].strip().lower()
    if base64_encoded is None:
        base64_encoded = media_type in IMAGE_MEDIA_TYPES  # the deployed API's binary media types
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if raw is None or raw == b"":
        event_body = None
    elif base64_encoded:
        event_body = b64(raw)
    else:
        # Like API Gateway for a non-binary media type: bytes are read as UTF-8, invalid ones replaced.
        event_body = raw.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": path,
            "httpMethod": method,
            "extendedRequestId": "JkR3tFd9oAMEb0A=",
            "requestTime": "09/Apr/2025:12:34:56 +0000",
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1744202096000,
            "requestId": request_id,
            "identity": {
                "sourceIp": "198.51.100.7",
                "userAgent": "curl/8.5.0",
                "accessKey": None,
                "user": None,
            },
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": event_body,
        "isBase64Encoded": base64_encoded,
    }


def json_event(payload: Any, *, query: Mapping[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """`POST /predict` with a JSON body."""
    return api_gateway_event(
        "POST", "/predict", body=json.dumps(payload), content_type="application/json", query=query, **options
    )


def body_of(response: Mapping[str, Any]) -> Any:
    return json.loads(response["body"])
