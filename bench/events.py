"""API Gateway REST (v1 proxy) events and a Lambda context, as the function receives them.

The REST API has binary media types for images, so API Gateway hands a raw image
body to the function base64-encoded with `isBase64Encoded: true`; JSON arrives as text.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any


def rest_event(method: str, path: str, body: str | None, headers: dict[str, str], *, encoded: bool) -> dict:
    """A v1 proxy event for `method path` on the `prod` stage."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": 1_700_000_000_000,
            "accountId": "123456789012",
            "apiId": "bench00000",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def raw_image_event(image: bytes, content_type: str = "image/jpeg") -> dict:
    """POST /predict with the image bytes as the body."""
    body = base64.b64encode(image).decode("ascii")
    return rest_event("POST", "/predict", body, {"Content-Type": content_type}, encoded=True)


def json_image_event(images: list[bytes]) -> dict:
    """POST /predict with `{"image": <base64>}` for one image, `{"images": [...]}` for several."""
    encoded = [base64.b64encode(image).decode("ascii") for image in images]
    payload: dict[str, Any] = {"image": encoded[0]} if len(encoded) == 1 else {"images": encoded}
    return rest_event(
        "POST", "/predict", json.dumps(payload), {"Content-Type": "application/json"}, encoded=False
    )


@dataclass
class LambdaContext:
    """The attributes of the context object the Lambda runtime passes to a handler."""

    function_name: str = "InferenceFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:InferenceFunction"
    log_group_name: str = "/aws/lambda/InferenceFunction"
    log_stream_name: str = "bench"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 25_000
