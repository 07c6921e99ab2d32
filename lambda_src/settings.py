"""Runtime tunables, read once from the function's environment.

MAX_BATCH_SIZE        images per request in {"images": [...]} (default 8)
MAX_BODY_BYTES        request body as received, base64 included (default 6 MiB: Lambda's limit)
MAX_IMAGE_PIXELS      width x height of one image, checked before decoding (default 40,000,000)
MODEL_RETRY_SECONDS   after a failed model load, wait this long before the next try (default 30)
TORCH_NUM_THREADS     the engine's intra-op threads (torch or onnxruntime); 0 = the CPUs the function
                      really has (default 0)
MODEL_ENGINE          torch (default) or onnxruntime: what runs the published model
CORS_ALLOW_ORIGIN     if set, every response carries Access-Control-Allow-Origin with this value

A bad value of any of them makes the service answer 503 `misconfigured` (saying which, in the
log). Powertools' own variables are checked by `correct_powertools_environment` before
Powertools is imported: a value it would raise on is dropped, with a warning in the log.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from lambda_src.contract import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_METRICS_NAMESPACE,
    DEFAULT_SERVICE_NAME,
    ENV_CORS_ALLOW_ORIGIN,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_IMAGE_PIXELS,
    ENV_MODEL_ENGINE,
    ENV_MODEL_RETRY_SECONDS,
    ENV_POWERTOOLS_DEBUG,
    ENV_POWERTOOLS_DEV,
    ENV_POWERTOOLS_LOG_DEDUPLICATION_DISABLED,
    ENV_POWERTOOLS_LOGGER_LOG_EVENT,
    ENV_POWERTOOLS_LOGGER_SAMPLE_RATE,
    ENV_POWERTOOLS_METRICS_DISABLED,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    ENV_POWERTOOLS_TRACE_DISABLED,
    ENV_TORCH_NUM_THREADS,
    LAMBDA_MAX_PAYLOAD_BYTES,
    MAX_BATCH_SIZE_LIMIT,
    ModelEngine,
)

MAX_TORCH_THREADS = 256  # Lambda has at most 6 vCPUs; more threads than this is a typo
MAX_RETRY_SECONDS = 86_400.0  # a day; it also becomes the 503's Retry-After header
# An origin (or "*") is visible ASCII: anything else would break the response's headers.
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]+$")


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
    engine: ModelEngine = ModelEngine.TORCH

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= MAX_BATCH_SIZE_LIMIT:
            raise ValueError(
                f"{ENV_MAX_BATCH_SIZE} must be from 1 to {MAX_BATCH_SIZE_LIMIT}, got {self.max_batch_size}"
            )
        if self.max_body_bytes < 1:
            raise ValueError(f"{ENV_MAX_BODY_BYTES} must be positive, got {self.max_body_bytes}")
        if self.max_image_pixels < 1:
            raise ValueError(f"{ENV_MAX_IMAGE_PIXELS} must be positive, got {self.max_image_pixels}")
        retry = self.model_retry_seconds
        if not (math.isfinite(retry) and 0 <= retry <= MAX_RETRY_SECONDS):
            raise ValueError(
                f"{ENV_MODEL_RETRY_SECONDS} must be zero or more seconds, at most {MAX_RETRY_SECONDS:g}, "
                f"got {self.model_retry_seconds}"
            )
        if not 0 <= self.torch_threads <= MAX_TORCH_THREADS:
            raise ValueError(
                f"{ENV_TORCH_NUM_THREADS} must be 0 (automatic) or more, at most {MAX_TORCH_THREADS}, "
                f"got {self.torch_threads}"
            )
        if self.cors_allow_origin is not None and not _HEADER_VALUE.match(self.cors_allow_origin):
            raise ValueError(
                f"{ENV_CORS_ALLOW_ORIGIN} must be an origin (https://app.example.com) or *, "
                f"got {self.cors_allow_origin!r}"
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
            engine=model_engine(env),
        )


def model_engine(env: Mapping[str, str]) -> ModelEngine:
    """The engine `MODEL_ENGINE` names (unset or empty: torch); ValueError naming the choices if unknown."""
    raw = env.get(ENV_MODEL_ENGINE, "").strip()
    if not raw:
        return ModelEngine.TORCH
    try:
        return ModelEngine(raw)
    except ValueError:
        choices = ", ".join(engine.value for engine in ModelEngine)
        raise ValueError(f"{ENV_MODEL_ENGINE} must be one of {choices}, got {raw!r}") from None


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


@dataclass(frozen=True)
class Correction:
    """A setting the runtime could not use as given, and what it did instead."""

    variable: str
    value: str
    instead: str

    def message(self) -> str:
        return f"{self.variable} {self.value!r} cannot be used: {self.instead}"


# Powertools parses these with strtobool, which raises on anything else.
_POWERTOOLS_FLAGS = (
    ENV_POWERTOOLS_DEV,
    ENV_POWERTOOLS_DEBUG,
    ENV_POWERTOOLS_LOG_DEDUPLICATION_DISABLED,
    ENV_POWERTOOLS_LOGGER_LOG_EVENT,
    ENV_POWERTOOLS_METRICS_DISABLED,
    ENV_POWERTOOLS_TRACE_DISABLED,
)
_STRTOBOOL_WORDS = {"y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0"}
# CloudWatch's rules: namespaces up to 255 of these characters (not starting "AWS/"); a
# dimension value (the service) up to 1,024 characters. Metrics breaking them are dropped.
_NAMESPACE = re.compile(r"^(?!AWS/)[A-Za-z0-9.\-_/#: ]{1,255}$")
_SERVICE = re.compile(r"^[\x20-\x7e]{1,1024}$")

# What this process's environment needed (filled once, before Powertools is imported; logged
# as warnings by the first Telemetry made from the environment).
corrections: list[Correction] = []


def correct_powertools_environment(environ: MutableMapping[str, str] | None = None) -> list[Correction]:
    """Drop each Powertools variable whose value Powertools would raise on (or CloudWatch drop).

    Call before Powertools is imported: it reads some of them at import. Dropped, each takes
    Powertools' default (our service name and namespace for those two). Returns what it changed.
    """
    env = os.environ if environ is None else environ
    found: list[Correction] = []
    for name in _POWERTOOLS_FLAGS:
        value = env.get(name)
        if value is not None and value.strip().lower() not in _STRTOBOOL_WORDS:
            found.append(Correction(name, value, "not true or false; its default (false) is used"))
    rate = env.get(ENV_POWERTOOLS_LOGGER_SAMPLE_RATE)
    if rate is not None and not _is_fraction(rate):
        found.append(
            Correction(ENV_POWERTOOLS_LOGGER_SAMPLE_RATE, rate, "not a number from 0 to 1; no debug sampling")
        )
    namespace = env.get(ENV_POWERTOOLS_METRICS_NAMESPACE)
    if namespace and not _NAMESPACE.match(namespace):
        found.append(
            Correction(
                ENV_POWERTOOLS_METRICS_NAMESPACE,
                namespace,
                f"not a CloudWatch namespace; metrics go to {DEFAULT_METRICS_NAMESPACE}",
            )
        )
    service = env.get(ENV_POWERTOOLS_SERVICE_NAME)
    if service and not _SERVICE.match(service):
        found.append(
            Correction(
                ENV_POWERTOOLS_SERVICE_NAME,
                service,
                f"not a CloudWatch dimension value; the service is {DEFAULT_SERVICE_NAME}",
            )
        )
    for correction in found:
        env.pop(correction.variable, None)
    if environ is None:
        corrections.extend(found)
    return found


def _is_fraction(raw: str) -> bool:
    try:
        value = float(raw)
    except ValueError:
        return False
    return 0.0 <= value <= 1.0
