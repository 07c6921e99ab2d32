"""The events and context the bench hands the handler, built as the local endpoint builds them.

`local_endpoint.gateway` turns an HTTP request into the API Gateway REST proxy event
(payload v1) the deployed API would send: image bodies arrive base64-encoded with
`isBase64Encoded: true` (the API's binary media types), JSON as text.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from lambda_src.contract import JPEG_MEDIA_TYPE, JSON_MEDIA_TYPE, PREDICT_PATH
from local_endpoint.gateway import HttpRequest, build_event, new_request_id
from local_endpoint.lambda_context import FunctionSettings, LambdaContext, new_context

BENCH_LOG_STREAM = "bench"


def predict_event(body: bytes, content_type: str) -> dict[str, Any]:
    """POST /predict with `body`, as API Gateway hands it to the function."""
    request = HttpRequest(
        method="POST",
        target=PREDICT_PATH,
        headers=[("Host", "bench.local"), ("Content-Type", content_type), ("User-Agent", "bench")],
        body=body,
        source_ip="127.0.0.1",
    )
    return build_event(request, request_id=new_request_id(), now_s=time.time(), server_port=443)


def raw_image_event(image: bytes, content_type: str = JPEG_MEDIA_TYPE) -> dict[str, Any]:
    """POST /predict with the image bytes as the body."""
    return predict_event(image, content_type)


def json_image_event(images: list[bytes]) -> dict[str, Any]:
    """POST /predict with `{"image": <base64>}` for one image, `{"images": [...]}` for several."""
    encoded = [base64.b64encode(image).decode("ascii") for image in images]
    payload: dict[str, Any] = {"image": encoded[0]} if len(encoded) == 1 else {"images": encoded}
    return predict_event(json.dumps(payload).encode("utf-8"), JSON_MEDIA_TYPE)


def lambda_context() -> LambdaContext:
    """A fresh context for one invocation, as the Lambda runtime passes it."""
    return new_context(FunctionSettings(), BENCH_LOG_STREAM)
