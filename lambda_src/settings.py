"""Runtime tunables, read once from the function's environment.

MAX_BATCH_SIZE        images per request in {"images": [...]} (default 8)
MAX_BODY_BYTES        request body as received, base64 included (default 6 MiB: Lambda's limit)
MAX_IMAGE_PIXELS      width x height of one image, checked before decoding (default 40,000,000)
MODEL_RETRY_SECONDS   after a failed model load, wait this long before the next try (default 30)
TORCH_NUM_THREADS     torch intra-op threads; 0 = the CPUs the function really has (default 0)
CORS_ALLOW_ORIGIN     if set, every response carries Access-Control-Allow-Origin with this value
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from lambda_src.contract import (
    DEFAULT_MAX_BATCH_SIZE,
    ENV_CORS_ALLOW_ORIGIN,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_IMAGE_PIXELS,
    ENV_MODEL_RETRY_SECONDS,
    ENV_TORCH_NUM_THREADS,
    LAMBDA_MAX_PAYLOAD_BYTES,
    MAX_BATCH_SIZE_LIMIT,
)


@dataclass(frozen=True)
class RuntimeSettings:
    """Limits and knobs of the inference runtime (defaults suit a 3 GB Lambda function)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_body_bytes: int = LAMBDA_MAX_PAYLOAD_BYTES
    max_image_pixels: int = 40_000_000  # ~120 MB as RGB; a 12 MP phone photo is 12,000,000
    model_retry_seconds: float = 30.0
    torch_threads: int = 0  # 0: as many as the function really has
    # With a Lambda proxy integration the function's own responses must carry the CORS header;
    # API Gateway answers the preflight (OPTIONS) itself.
    cors_allow_origin: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= MAX_BATCH_SIZE_LIMIT:
            raise ValueError(
                f"{ENV_MAX_BATCH_SIZE} must be from 1 to {MAX_BATCH_SIZE_LIMIT}, got {self.max_batch_size}"
            )
        if self.max_body_bytes < 1:
            raise ValueError(f"{ENV_MAX_BODY_BYTES} must be positive, got {self.max_body_bytes}")
        if self.max_image_pixels < 1:
            raise ValueError(f"{ENV_MAX_IMAGE_PIXELS} must be positive, got {self.max_image_pixels}")
        if not (math.isfinite(self.model_retry_seconds) and self.model_retry_seconds >= 0):
            raise ValueError(
                f"{ENV_MODEL_RETRY_SECONDS} must be zero or more seconds, got {self.model_retry_seconds}"
            )
        if self.torch_threads < 0:
            raise ValueError(
                f"{ENV_TORCH_NUM_THREADS} must be 0 (automatic) or more, got {self.torch_threads}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """Settings from the environment; unset or empty variables keep their defaults."""
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            max_batch_size=_integer(env, ENV_MAX_BATCH_SIZE, defaults.max_batch_size),
            max_body_bytes=_integer(env, ENV_MAX_BODY_BYTES, defaults.max_body_bytes),
            max_image_pixels=_integer(env, ENV_MAX_IMAGE_PIXELS, defaults.max_image_pixels),
            model_retry_seconds=_number(env, ENV_MODEL_RETRY_SECONDS, defaults.model_retry_seconds),
            torch_threads=_integer(env, ENV_TORCH_NUM_THREADS, defaults.torch_threads),
            cors_allow_origin=env.get(ENV_CORS_ALLOW_ORIGIN, "").strip() or None,
        )


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
