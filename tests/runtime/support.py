"""Test helpers for the runtime: API Gateway events, test images, a tiny trained model, publishing.

The model is real: a torchvision resnet18 trained for a few steps on generated images
whose classes differ by colour, then published with the artifact contract of
`lambda_src.artifact`, exactly as the training side publishes.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image

from lambda_src.architectures import build_model
from lambda_src.artifact import (
    Manifest,
    Preprocessing,
    latest_key,
    manifest_key,
    sha256_hex,
    weights_key,
)
from lambda_src.contract import IMAGE_MEDIA_TYPES
from lambda_src.preprocessing import eval_transform, to_rgb
from lambda_src.telemetry import Telemetry

LABELS = ("red", "green", "blue")
COLOURS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 210)}
PREPROCESSING = Preprocessing(resize=40, crop=32)
ARCHITECTURE = "resnet18"


def coloured_image(label: str, *, size: tuple[int, int] = (48, 48), seed: int = 0) -> Image.Image:
    """An RGB picture of class `label`: its colour, a random brightness and per-pixel noise."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[label], dtype=np.float32) * rng.uniform(0.7, 1.15)
    noise = rng.normal(0, 25, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def train_tiny_model(*, steps: int = 15, seed: int = 0) -> torch.nn.Module:
    """A resnet18 that tells the three colours apart, trained through the serving preprocessing."""
    torch.manual_seed(seed)
    transform = eval_transform(PREPROCESSING)
    samples = [(label, index) for index in range(12) for label in LABELS]
    inputs = torch.stack(
        [transform(coloured_image(label, seed=100 + i)) for i, (label, _) in enumerate(samples)]
    )
    targets = torch.tensor([LABELS.index(label) for label, _ in samples])
    model = build_model(ARCHITECTURE, len(LABELS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randperm(len(samples), generator=generator)[:12]
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def reference_probabilities(model: torch.nn.Module, image_bytes: bytes) -> torch.Tensor:
    """The model run directly on an encoded image: what the handler's scores must equal."""
    image = to_rgb(Image.open(io.BytesIO(image_bytes)))
    with torch.inference_mode():
        logits = model(eval_transform(PREPROCESSING)(image).unsqueeze(0))
    return torch.softmax(logits, dim=1)[0]


@dataclass(frozen=True)
class Publication:
    """What a test published: the manifest and the bytes of model.pt."""

    manifest: Manifest
    weights: bytes


def make_manifest(model_name: str, version: str, weights: bytes, **overrides: Any) -> Manifest:
    fields: dict[str, Any] = {
        "model_name": model_name,
        "version": version,
        "architecture": ARCHITECTURE,
        "labels": LABELS,
        "weights_sha256": sha256_hex(weights),
        "weights_size_bytes": len(weights),
        "preprocessing": PREPROCESSING,
        "metrics": {"val_accuracy": 1.0},
        "framework": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "created_at": datetime.now(UTC).isoformat(),
    }
    fields.update(overrides)
    return Manifest(**fields)


def publish(
    write: Callable[[str, bytes], None],
    *,
    prefix: str,
    model_name: str,
    version: str,
    weights: bytes,
    manifest: Manifest | None = None,
    point_latest: bool = True,
) -> Publication:
    """Write model.pt, manifest.json and (optionally) the LATEST pointer, in the contract's order."""
    manifest = manifest or make_manifest(model_name, version, weights)
    write(weights_key(prefix, model_name, version), weights)
    write(manifest_key(prefix, model_name, version), manifest.to_json())
    if point_latest:
        write(latest_key(prefix, model_name), version.encode("utf-8"))
    return Publication(manifest=manifest, weights=weights)


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


class CapturedTelemetry(Telemetry):
    """Telemetry writing to memory, so tests can read every log and EMF line."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__(service=f"test-{uuid.uuid4().hex[:8]}", stream=self.buffer)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().split("\n") if line.strip()]

    def logs(self, message: str | None = None) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if "_aws" not in line and (message is None or line.get("message") == message)
        ]

    def metrics(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if "_aws" in line]
