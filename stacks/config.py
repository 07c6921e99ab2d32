"""Deployment settings: CDK context (cdk.json, `-c key=value`) parsed into one frozen dataclass.

app.py collects the raw context values for CONTEXT_KEYS and calls `parse_context`; nothing else
reads context. Values from cdk.json arrive typed (numbers, booleans, null), values from `-c`
arrive as strings, so every reader accepts both. Every problem is reported with its key, the
value given and what is allowed, all at once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from lambda_src.artifact import LATEST, check_name
from lambda_src.settings import MAX_BATCH_SIZE_LIMIT

# API Gateway REST gives up on an integration after 29 s; the function must finish first,
# or callers get a 504 while the function keeps running (and billing).
API_INTEGRATION_TIMEOUT_S = 29

ARCHITECTURES = ("x86_64", "arm64")
AUTH_MODES = ("iam", "api_key", "none")
REMOVAL_POLICIES = ("retain", "destroy")
EXECUTION_LOG_LEVELS = ("error", "info")
# How CodeDeploy shifts the live alias to a new function version (aws_codedeploy.LambdaDeploymentConfig).
DEPLOYMENT_PREFERENCES = (
    "all_at_once",
    "canary_10percent_5minutes",
    "canary_10percent_10minutes",
    "canary_10percent_15minutes",
    "canary_10percent_30minutes",
    "linear_10percent_every_1minute",
    "linear_10percent_every_2minutes",
    "linear_10percent_every_3minutes",
    "linear_10percent_every_10minutes",
)

# CloudWatch Logs accepts only these retention periods (days -> aws_logs.RetentionDays member).
LOG_RETENTION_DAYS = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}

_STACK_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_METRICS_NAMESPACE = re.compile(r"^[A-Za-z0-9._/#:-][A-Za-z0-9 ._/#:-]{0,254}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_NONE_WORDS = {"", "none", "null"}

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more context values are invalid; the message lists each with what is allowed."""


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything the stacks need to know about one deployment. Field names are the context keys."""

    stack_prefix: str
    model_name: str
    model_version: str
    model_prefix: str
    architecture: str
    memory_size_mb: int
    timeout_seconds: int
    ephemeral_storage_mb: int
    max_batch_size: int
    reserved_concurrency: int | None
    provisioned_concurrency: int
    provisioned_concurrency_max: int
    auth_mode: str
    throttle_rate_limit: float
    throttle_burst_limit: int
    api_key_quota_per_day: int
    cors_allow_origin: str | None
    log_retention_days: int
    execution_log_level: str
    api_gateway_cloudwatch_role: bool
    metrics_namespace: str
    bucket_removal_policy: str
    noncurrent_version_expiration_days: int
    deployment_preference: str
    alarm_5xx_rate_percent: float
    alarm_p99_latency_ms: int
    alarm_function_errors: int
    alarm_throttles: int
    alarm_model_load_failures: int
    alarm_email: str | None


CONTEXT_KEYS: tuple[str, ...] = tuple(field.name for field in fields(DeploymentConfig))


class _Invalid(Exception):
    """A single value failed; carries the human description of what is allowed."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


def _shown(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _whole_number(value: object, low: int, high: int, unit: str) -> int:
    allowed = f"a whole number from {low} to {high}{unit}"
    if isinstance(value, bool):
        raise _Invalid(allowed)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        number = int(value.strip())
    else:
        raise _Invalid(allowed)
    if not low <= number <= high:
        raise _Invalid(allowed)
    return number


def _positive_number(value: object, high: float, unit: str) -> float:
    allowed = f"a number above 0 and at most {high:g}{unit}"
    if isinstance(value, bool):
        raise _Invalid(allowed)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Invalid(allowed) from None
    if not 0 < number <= high:
        raise _Invalid(allowed)
    return number


def _choice(value: object, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise _Invalid("one of " + ", ".join(choices))


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise _Invalid("true or false")


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def _name(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"a {kind}: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    try:
        return check_name(kind, value.strip())
    except ValueError:
        raise _Invalid(
            f"a {kind}: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ) from None


def _model_version(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() == LATEST:
        return LATEST
    try:
        return _name(value, "version")
    except _Invalid:
        raise _Invalid(f"{LATEST!r} or a published version name (letters, digits, '.', '_' or '-')") from None


def _model_prefix(value: object) -> str:
    allowed = "one or more names separated by '/' (letters, digits, '.', '_' or '-'), e.g. 'models'"
    if not isinstance(value, str) or not value.strip("/ "):
        raise _Invalid(allowed)
    parts = value.strip("/ ").split("/")
    try:
        return "/".join(check_name("prefix part", part) for part in parts)
    except ValueError:
        raise _Invalid(allowed) from None


def _stack_prefix(value: object) -> str:
    if isinstance(value, str) and _STACK_PREFIX.match(value.strip()):
        return value.strip()
    raise _Invalid("1-64 letters, digits or '-', starting with a letter (CloudFormation stack name rules)")


def _origin(value: object) -> str | None:
    if _is_none(value):
        return None
    if isinstance(value, str) and (value.strip() == "*" or _ORIGIN.match(value.strip())):
        return value.strip()
    raise _Invalid("empty (CORS off), '*', or one origin such as 'https://app.example.com' (no path)")


def _metrics_namespace(value: object) -> str:
    allowed = "1-255 letters, digits, spaces or . - _ / # :, not starting with 'AWS/'"
    if isinstance(value, str) and _METRICS_NAMESPACE.match(value) and not value.startswith("AWS/"):
        return value
    raise _Invalid(allowed)


def _log_retention(value: object) -> int:
    allowed = "one of " + ", ".join(str(days) for days in LOG_RETENTION_DAYS) + " (days)"
    try:
        days = _whole_number(value, 1, max(LOG_RETENTION_DAYS), "")
    except _Invalid:
        raise _Invalid(allowed) from None
    if days not in LOG_RETENTION_DAYS:
        raise _Invalid(allowed)
    return days


def _email(value: object) -> str | None:
    if _is_none(value):
        return None
    if isinstance(value, str) and len(value.strip()) <= 254 and _EMAIL.match(value.strip()):
        return value.strip()
    raise _Invalid("empty (no notifications) or one e-mail address such as 'ops@example.com'")


def _optional_concurrency(value: object) -> int | None:
    if _is_none(value):
        return None
    try:
        return _whole_number(value, 1, 10000, "")
    except _Invalid:
        raise _Invalid("empty/null (no reservation) or a whole number from 1 to 10000") from None


class _ContextReader:
    """Reads one key at a time and collects every problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = values
        self.problems: list[str] = []

    def read(self, key: str, parse: Callable[[Any], T], *, optional: bool = False) -> T:
        value = self._values.get(key)
        if value is None and not optional:
            self.problems.append(
                f"context key {key!r} is not set: add it to cdk.json or pass -c {key}=<value>"
            )
            return None  # type: ignore[return-value]
        try:
            return parse(value)
        except _Invalid as invalid:
            self.problems.append(
                f"context key {key!r} has invalid value {_shown(value)}: allowed is {invalid.allowed}"
            )
            return None  # type: ignore[return-value]

    def add_problem(self, message: str) -> None:
        self.problems.append(message)


def parse_context(context: Mapping[str, object]) -> DeploymentConfig:
    """Build the DeploymentConfig from the app's context, or raise ConfigError naming each bad key.

    `context` may hold other keys too (CDK's feature flags); a key close to one of ours is
    reported as a likely typo, since CDK would silently ignore it.
    """
    read = _ContextReader(context)
    for message in _misspelled_keys(context):
        read.add_problem(message)
    settings: dict[str, Any] = {
        "stack_prefix": read.read("stack_prefix", _stack_prefix),
        "model_name": read.read("model_name", lambda value: _name(value, "model name")),
        "model_version": read.read("model_version", _model_version),
        "model_prefix": read.read("model_prefix", _model_prefix),
        "architecture": read.read("architecture", lambda value: _choice(value, ARCHITECTURES)),
        "memory_size_mb": read.read(
            # torch + torchvision alone need several hundred MB; below 1 GB the function dies at init.
            "memory_size_mb",
            lambda value: _whole_number(value, 1024, 10240, " (MB)"),
        ),
        "timeout_seconds": read.read(
            "timeout_seconds",
            lambda value: _whole_number(
                value,
                1,
                API_INTEGRATION_TIMEOUT_S - 1,
                f" (seconds; must stay below API Gateway's {API_INTEGRATION_TIMEOUT_S} s "
                "integration timeout)",
            ),
        ),
        "ephemeral_storage_mb": read.read(
            "ephemeral_storage_mb", lambda value: _whole_number(value, 512, 10240, " (MB)")
        ),
        "max_batch_size": read.read(
            "max_batch_size", lambda value: _whole_number(value, 1, MAX_BATCH_SIZE_LIMIT, " (images)")
        ),
        "reserved_concurrency": read.read("reserved_concurrency", _optional_concurrency, optional=True),
        "provisioned_concurrency": read.read(
            "provisioned_concurrency", lambda value: _whole_number(value, 0, 10000, " (0 = none)")
        ),
        "provisioned_concurrency_max": read.read(
            "provisioned_concurrency_max",
            lambda value: _whole_number(value, 0, 10000, " (0 = no autoscaling)"),
        ),
        "auth_mode": read.read("auth_mode", lambda value: _choice(value, AUTH_MODES)),
        "throttle_rate_limit": read.read(
            "throttle_rate_limit", lambda value: _positive_number(value, 10000, " (requests per second)")
        ),
        "throttle_burst_limit": read.read(
            "throttle_burst_limit", lambda value: _whole_number(value, 1, 5000, " (requests)")
        ),
        "api_key_quota_per_day": read.read(
            "api_key_quota_per_day", lambda value: _whole_number(value, 1, 100_000_000, " (requests per day)")
        ),
        "cors_allow_origin": read.read("cors_allow_origin", _origin, optional=True),
        "log_retention_days": read.read("log_retention_days", _log_retention),
        "execution_log_level": read.read(
            "execution_log_level", lambda value: _choice(value, EXECUTION_LOG_LEVELS)
        ),
        "api_gateway_cloudwatch_role": read.read("api_gateway_cloudwatch_role", _boolean),
        "metrics_namespace": read.read("metrics_namespace", _metrics_namespace),
        "bucket_removal_policy": read.read(
            "bucket_removal_policy", lambda value: _choice(value, REMOVAL_POLICIES)
        ),
        "noncurrent_version_expiration_days": read.read(
            "noncurrent_version_expiration_days", lambda value: _whole_number(value, 1, 3650, " (days)")
        ),
        "deployment_preference": read.read(
            "deployment_preference", lambda value: _choice(value, DEPLOYMENT_PREFERENCES)
        ),
        "alarm_5xx_rate_percent": read.read(
            "alarm_5xx_rate_percent", lambda value: _positive_number(value, 100, " (percent of requests)")
        ),
        "alarm_p99_latency_ms": read.read(
            # API Gateway answers 504 after 29 s, so a higher threshold could never be crossed.
            "alarm_p99_latency_ms",
            lambda value: _whole_number(value, 10, API_INTEGRATION_TIMEOUT_S * 1000, " (milliseconds)"),
        ),
        "alarm_function_errors": read.read(
            "alarm_function_errors", lambda value: _whole_number(value, 1, 100_000, " (errors per minute)")
        ),
        "alarm_throttles": read.read(
            "alarm_throttles", lambda value: _whole_number(value, 1, 100_000, " (throttles per minute)")
        ),
        "alarm_model_load_failures": read.read(
            "alarm_model_load_failures",
            lambda value: _whole_number(value, 1, 10_000, " (failures per minute)"),
        ),
        "alarm_email": read.read("alarm_email", _email, optional=True),
    }
    _check_combinations(settings, read)
    if read.problems:
        raise ConfigError("\n".join(read.problems))
    return DeploymentConfig(**settings)


def _check_combinations(settings: Mapping[str, Any], read: _ContextReader) -> None:
    """Rules that involve more than one key."""
    reserved = settings["reserved_concurrency"]
    provisioned = settings["provisioned_concurrency"]
    if reserved is not None and provisioned is not None and provisioned > reserved:
        read.add_problem(
            f"context key 'provisioned_concurrency' has invalid value {provisioned}: allowed is at most "
            f"reserved_concurrency ({reserved}), since provisioned environments count against the reservation"
        )
    _check_autoscaling_range(settings, read)


def _check_autoscaling_range(settings: Mapping[str, Any], read: _ContextReader) -> None:
    """provisioned_concurrency .. provisioned_concurrency_max is the autoscaling range (0 = none)."""
    reserved = settings["reserved_concurrency"]
    provisioned = settings["provisioned_concurrency"]
    maximum = settings["provisioned_concurrency_max"]
    if not maximum or provisioned is None:
        return
    prefix = f"context key 'provisioned_concurrency_max' has invalid value {maximum}: allowed is"
    if provisioned < 1 or maximum <= provisioned:
        read.add_problem(
            f"{prefix} 0 (no autoscaling) or above provisioned_concurrency ({provisioned}), which is the "
            "low end of the autoscaling range and must then be at least 1"
        )
    elif reserved is not None and maximum > reserved:
        read.add_problem(
            f"{prefix} at most reserved_concurrency ({reserved}), since provisioned environments count "
            "against the reservation"
        )


def _misspelled_keys(context: Mapping[str, object]) -> list[str]:
    """One message per context key that is not ours but close to one of ours."""
    messages = []
    for key in sorted(context):
        if key in CONTEXT_KEYS or ":" in key or "@" in key:
            continue  # ours, or CDK's own namespaced keys
        matches = difflib.get_close_matches(key, CONTEXT_KEYS, n=1, cutoff=0.75)
        if matches:
            messages.append(f"unknown context key {key!r}: did you mean {matches[0]!r}?")
    return messages
