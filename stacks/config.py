"""Deployment settings: each CDK context key declared once, as a field of DeploymentConfig.

A field's declaration holds the key's type, default, allowed values (with units) and help
text; `parse_context` reads every declared key the same way, then applies the rules that
involve more than one key, and `settings_table` renders the docs' settings table from the same
declarations. Defaults live here only: cdk.json carries CDK's feature flags, and a key set
there or with `-c key=value` overrides its default. Values from cdk.json arrive typed
(numbers, booleans, null), values from `-c` arrive as strings, so every rule accepts both.
Every problem is reported with its key, the value given and what is allowed, all at once.

app.py is the only caller of `parse_context`; nothing else reads context. Standard library
only (plus lambda_src's names): the constructs map the choices below onto CDK's own enums.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from enum import StrEnum
from typing import Any

from lambda_src.artifact import LATEST, check_name
from lambda_src.contract import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_METRICS_NAMESPACE,
    DEFAULT_MODEL_ENGINE,
    MAX_BATCH_SIZE_LIMIT,
    AuthMode,
    ModelEngine,
)

# API Gateway REST gives up on an integration after 29 s; the function must finish first,
# or callers get a 504 while the function keeps running (and billing).
API_INTEGRATION_TIMEOUT_S = 29
# Lambda refuses SnapStart with more ephemeral storage than this (and with provisioned concurrency).
SNAP_START_MAX_EPHEMERAL_STORAGE_MB = 512


class Architecture(StrEnum):
    """The function's instruction set. Member names are aws_lambda.Architecture's."""

    X86_64 = "x86_64"
    ARM_64 = "arm64"


class BucketRemovalPolicy(StrEnum):
    """What deleting the stack does to the buckets. Member names are aws_cdk.RemovalPolicy's."""

    RETAIN = "retain"
    DESTROY = "destroy"


class ExecutionLogLevel(StrEnum):
    """API Gateway execution logging. Member names are aws_apigateway.MethodLoggingLevel's."""

    ERROR = "error"
    INFO = "info"


class DeploymentPreference(StrEnum):
    """How CodeDeploy shifts the live alias. Member names are aws_codedeploy.LambdaDeploymentConfig's."""

    ALL_AT_ONCE = "all_at_once"
    CANARY_10_PERCENT_5_MINUTES = "canary_10percent_5minutes"
    CANARY_10_PERCENT_10_MINUTES = "canary_10percent_10minutes"
    CANARY_10_PERCENT_15_MINUTES = "canary_10percent_15minutes"
    CANARY_10_PERCENT_30_MINUTES = "canary_10percent_30minutes"
    LINEAR_10_PERCENT_EVERY_1_MINUTE = "linear_10percent_every_1minute"
    LINEAR_10_PERCENT_EVERY_2_MINUTES = "linear_10percent_every_2minutes"
    LINEAR_10_PERCENT_EVERY_3_MINUTES = "linear_10percent_every_3minutes"
    LINEAR_10_PERCENT_EVERY_10_MINUTES = "linear_10percent_every_10minutes"


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
_NAME_CHARACTERS = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Lambda refuses a reservation that leaves fewer unreserved concurrent executions in the account.
UNRESERVED_MINIMUM = 100
_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,128}$")
_KEY_ARN_SHAPE = "arn:aws:kms:<region>:<account>:key/<key id>"
# CDK's own context keys without ':' or '@' (it writes them to cdk.context.json).
CDK_PLAIN_CONTEXT_KEYS = frozenset({"acknowledged-issue-numbers"})
_PREFIX_ALLOWED = "one or more names separated by '/' (letters, digits, '.', '_' or '-'), e.g. 'models'"
# An Express child execution runs at most 5 minutes: the batch function's timeout plus the
# retries' waits (stacks/batch_inference.py, 122 s at most) must fit in it.
BATCH_TIMEOUT_LIMIT_S = 150
# A child's output (one line per image, about 1 KB at most) must stay under Step Functions'
# 256 KB payload limit.
BATCH_IMAGES_PER_INVOCATION_LIMIT = 100


class ConfigError(ValueError):
    """One or more context values are invalid; the message lists each with what is allowed."""


@dataclass(frozen=True)
class Rule:
    """How one key's value is read: `parse` raises ValueError for a value outside `allowed`."""

    allowed: str  # what is allowed, with units: shown in error messages and the docs' settings table
    parse: Callable[[Any], Any]


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def _to_whole_number(value: object, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(value)
    return value


def whole_number(low: int, high: int, unit: str = "") -> Rule:
    return Rule(
        f"a whole number from {low} to {high}{unit}", lambda value: _to_whole_number(value, low, high)
    )


def _to_positive_number(value: object, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    number = float(value)
    if not 0 < number <= high:
        raise ValueError(value)
    return number


def positive_number(high: float, unit: str) -> Rule:
    return Rule(
        f"a number above 0 and at most {high:g}{unit}", lambda value: _to_positive_number(value, high)
    )


def one_of(choices: type[StrEnum]) -> Rule:
    """Case-insensitive choice among the enum's values; parses to the enum member."""

    def parse(value: object) -> StrEnum:
        if not isinstance(value, str):
            raise ValueError(value)
        return choices(value.strip().lower())

    return Rule("one of " + ", ".join(choices), parse)


def _to_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise ValueError(value)


def optional(allowed: str, parse: Callable[[Any], Any]) -> Rule:
    """`parse`, or None for an empty value ("", none, null), which means "off"."""
    return Rule(allowed, lambda value: None if _is_none(value) else parse(value))


def matching(pattern: re.Pattern[str], allowed: str) -> Rule:
    def parse(value: object) -> str:
        if not isinstance(value, str) or not pattern.match(value.strip()):
            raise ValueError(value)
        return value.strip()

    return Rule(allowed, parse)


def _to_key_arn(value: object) -> str:
    if not isinstance(value, str) or not _KEY_ARN.match(value.strip()):
        raise ValueError(value)
    return value.strip()


def _to_name(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return check_name(kind, value.strip())


def _to_model_version(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() == LATEST:
        return LATEST
    return _to_name(value, "version")


def _to_model_prefix(value: object) -> str:
    if not isinstance(value, str) or not value.strip("/ "):
        raise ValueError(value)
    return "/".join(check_name("prefix part", part) for part in value.strip("/ ").split("/"))


def _to_prefix_list(value: object) -> tuple[str, ...]:
    """A JSON list (cdk.json) or a comma-separated string (-c) of key prefixes, each ending in '/'."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(value)
    return tuple(f"{_to_model_prefix(item)}/" for item in items)


def _to_bucket_name(value: object) -> str:
    if isinstance(value, str) and _BUCKET_NAME.match(value.strip()) and ".." not in value:
        return value.strip()
    raise ValueError(value)


def _to_metrics_namespace(value: object) -> str:
    # Not stripped: spaces are part of a CloudWatch namespace.
    if isinstance(value, str) and _METRICS_NAMESPACE.match(value) and not value.startswith("AWS/"):
        return value
    raise ValueError(value)


def _to_log_retention(value: object) -> int:
    days = _to_whole_number(value, 1, max(LOG_RETENTION_DAYS))
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(value)
    return days


def _to_cors_origin(value: object) -> str:
    if isinstance(value, str) and (value.strip() == "*" or _ORIGIN.match(value.strip())):
        return value.strip()
    raise ValueError(value)


def _to_email(value: object) -> str:
    if isinstance(value, str) and len(value.strip()) <= 254 and _EMAIL.match(value.strip()):
        return value.strip()
    raise ValueError(value)


def about(rule: Rule, help: str) -> dict[str, object]:
    """A context key's declaration besides its type and default: the rule for its value, what it sets.

    A key whose default is None is optional: None (empty) is one of its values and means "off".
    """
    return {"rule": rule, "help": help}


# --- the declaration: one field per context key ---------------------------------------------------


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything the stacks need to know about one deployment. Field names are the context keys."""

    stack_prefix: str = field(
        default="ImageClassifier",
        metadata=about(
            matching(
                _STACK_PREFIX,
                "1-64 letters, digits or '-', starting with a letter (CloudFormation stack name rules)",
            ),
            "stack names `<prefix>ModelStore`, `<prefix>Inference` (one prefix per environment)",
        ),
    )
    model_name: str = field(
        default="demo-shapes",
        metadata=about(
            Rule(f"a model name: {_NAME_CHARACTERS}", lambda value: _to_name(value, "model name")),
            "the model the function serves (`MODEL_NAME`)",
        ),
    )
    model_version: str = field(
        default=LATEST,
        metadata=about(
            Rule(
                f"{LATEST!r} or a published version name (letters, digits, '.', '_' or '-')",
                _to_model_version,
            ),
            "`latest` follows the `LATEST` pointer (with `snap_start`: as it was when the deploy published "
            "the function version; `make deploy` pins it); a pinned version is part of the function version",
        ),
    )
    model_prefix: str = field(
        default="models",
        metadata=about(
            Rule(
                _PREFIX_ALLOWED,
                _to_model_prefix,
            ),
            "key prefix of the model store in the bucket (`MODEL_STORE=s3://bucket/<prefix>`)",
        ),
    )
    architecture: Architecture = field(
        default=Architecture.X86_64,
        metadata=about(one_of(Architecture), "Lambda architecture and the image's build platform"),
    )
    engine: ModelEngine = field(
        default=DEFAULT_MODEL_ENGINE,
        metadata=about(
            one_of(ModelEngine),
            "serving engine: `torch` serves model.pt; `onnxruntime` builds an image without torch and "
            "serves the version's model.onnx (published with it; see docs/engines.md)",
        ),
    )
    # torch + torchvision alone need several hundred MB; below 1 GB the function dies at init.
    memory_size_mb: int = field(
        default=3008,
        metadata=about(
            whole_number(1024, 10240, " (MB)"), "function memory; CPU grows with it (1769 MB = 1 vCPU)"
        ),
    )
    timeout_seconds: int = field(
        default=20,
        metadata=about(
            whole_number(
                1,
                API_INTEGRATION_TIMEOUT_S - 1,
                f" (seconds; must stay below API Gateway's {API_INTEGRATION_TIMEOUT_S} s "
                "integration timeout)",
            ),
            "function timeout",
        ),
    )
    ephemeral_storage_mb: int = field(
        default=512, metadata=about(whole_number(512, 10240, " (MB)"), "`/tmp` size")
    )
    max_batch_size: int = field(
        default=DEFAULT_MAX_BATCH_SIZE,
        metadata=about(
            whole_number(1, MAX_BATCH_SIZE_LIMIT, " (images)"),
            'images per `{"images": [...]}` request (`MAX_BATCH_SIZE`; more is a 413 from the function)',
        ),
    )
    reserved_concurrency: int | None = field(
        default=None,
        metadata=about(
            optional(
                "empty/null (no reservation) or a whole number from 1 to 10000",
                whole_number(1, 10000).parse,
            ),
            "reserved concurrent executions (a hard cap); `null` reserves none",
        ),
    )
    snap_start: bool = field(
        default=True,
        metadata=about(
            Rule("true or false", _to_boolean),
            "SnapStart for the API function: each published version is initialised once and its "
            "environments are restored from that snapshot (no provisioned concurrency, `/tmp` at most "
            f"{SNAP_START_MAX_EPHEMERAL_STORAGE_MB} MB; see the SnapStart page)",
        ),
    )
    account_concurrency_limit: int = field(
        default=1000,
        metadata=about(
            whole_number(100, 1_000_000, " (concurrent executions)"),
            "the account's Lambda concurrency quota in the Region (new accounts may have less than "
            "1,000); the reservations (`reserved_concurrency`, `batch_reserved_concurrency`) must leave "
            f"{UNRESERVED_MINIMUM} of it unreserved, as Lambda requires",
        ),
    )
    provisioned_concurrency: int = field(
        default=0,
        metadata=about(
            whole_number(0, 10000, " (0 = none)"),
            "warm environments on the `live` alias (no cold starts, billed while idle); "
            "at most `reserved_concurrency`",
        ),
    )
    provisioned_concurrency_max: int = field(
        default=0,
        metadata=about(
            whole_number(0, 10000, " (0 = no autoscaling)"),
            "autoscaling range `provisioned_concurrency`..max for the `live` alias's provisioned concurrency "
            "(target: 70% utilization); if not 0, above `provisioned_concurrency` (then at least 1) and "
            "at most `reserved_concurrency`",
        ),
    )
    auth_mode: AuthMode = field(
        default=AuthMode.IAM,
        metadata=about(
            one_of(AuthMode), "SigV4 auth; API key with a usage plan; or an open endpoint (only when asked)"
        ),
    )
    throttle_rate_limit: float = field(
        default=10.0,
        metadata=about(
            positive_number(10000, " (requests per second)"), "stage (and usage plan) steady rate"
        ),
    )
    throttle_burst_limit: int = field(
        default=20, metadata=about(whole_number(1, 5000, " (requests)"), "stage (and usage plan) burst")
    )
    api_key_quota_per_day: int = field(
        default=10000,
        metadata=about(
            whole_number(1, 100_000_000, " (requests per day)"),
            "daily request quota of the usage plan (`api_key` mode)",
        ),
    )
    cors_allow_origin: str | None = field(
        default=None,
        metadata=about(
            optional(
                "empty (CORS off), '*', or one origin such as 'https://app.example.com' (no path)",
                _to_cors_origin,
            ),
            "CORS preflight, `Access-Control-Allow-Origin` on API Gateway's errors, `CORS_ALLOW_ORIGIN` "
            "for the function's responses",
        ),
    )
    log_retention_days: int = field(
        default=30,
        metadata=about(
            Rule(
                "one of " + ", ".join(str(days) for days in LOG_RETENTION_DAYS) + " (days)", _to_log_retention
            ),
            "function and API access log groups (CloudWatch accepts only these periods)",
        ),
    )
    execution_log_level: ExecutionLogLevel = field(
        default=ExecutionLogLevel.ERROR,
        metadata=about(
            one_of(ExecutionLogLevel), "API Gateway execution logs (request bodies are never logged)"
        ),
    )
    api_gateway_cloudwatch_role: bool = field(
        default=True,
        metadata=about(
            Rule("true or false", _to_boolean),
            "create API Gateway's account-wide logging role; `false` if your account already sets it",
        ),
    )
    metrics_namespace: str = field(
        default=DEFAULT_METRICS_NAMESPACE,
        metadata=about(
            Rule(
                "1-255 letters, digits, spaces or . - _ / # :, not starting with 'AWS/'",
                _to_metrics_namespace,
            ),
            "`POWERTOOLS_METRICS_NAMESPACE` for the handler's metrics",
        ),
    )
    bucket_removal_policy: BucketRemovalPolicy = field(
        default=BucketRemovalPolicy.RETAIN,
        metadata=about(one_of(BucketRemovalPolicy), "what deleting the stack does to the model bucket"),
    )
    noncurrent_version_expiration_days: int = field(
        default=30,
        metadata=about(
            whole_number(1, 3650, " (days)"), "how long overwritten or deleted object versions are kept"
        ),
    )
    deployment_preference: DeploymentPreference = field(
        default=DeploymentPreference.CANARY_10_PERCENT_5_MINUTES,
        metadata=about(
            one_of(DeploymentPreference),
            "how CodeDeploy shifts the `live` alias to a new function version; it rolls back when a "
            "rollback alarm fires (see Operations)",
        ),
    )
    alarm_5xx_rate_percent: float = field(
        default=1.0,
        metadata=about(
            positive_number(100, " (percent of requests)"),
            "API 5XX alarm: share of requests answered 5XX, in 2 of 3 minutes",
        ),
    )
    # API Gateway answers 504 after 29 s, so a higher threshold could never be crossed.
    alarm_p99_latency_ms: int = field(
        default=5000,
        metadata=about(
            whole_number(10, API_INTEGRATION_TIMEOUT_S * 1000, " (milliseconds)"),
            "API p99 latency alarm, in 2 of 3 minutes",
        ),
    )
    alarm_function_errors: int = field(
        default=1,
        metadata=about(
            whole_number(1, 100_000, " (errors per minute)"),
            "failed invocations of the `live` alias (crash, timeout, out of memory)",
        ),
    )
    alarm_throttles: int = field(
        default=1,
        metadata=about(
            whole_number(1, 100_000, " (throttles per minute)"),
            "throttled invocations (notifies only: a rollback would not help)",
        ),
    )
    alarm_model_load_failures: int = field(
        default=1,
        metadata=about(
            whole_number(1, 10_000, " (failures per minute)"),
            "failed model loads (the handler's `ModelLoadFailures` metric)",
        ),
    )
    alarm_email: str | None = field(
        default=None,
        metadata=about(
            optional("empty (no notifications) or one e-mail address such as 'ops@example.com'", _to_email),
            "an SNS topic (KMS-encrypted, TLS only) e-mails every alarm and recovery to it; confirm the "
            "subscription mail",
        ),
    )
    # Batch inference (opt-in): stacks/batch_function.py and stacks/batch_state_machine.py, docs/batch.md.
    batch_inference: bool = field(
        default=False,
        metadata=about(
            Rule("true or false", _to_boolean),
            "add the batch path: a batch function from the same image and a Step Functions Distributed Map",
        ),
    )
    batch_memory_size_mb: int = field(
        default=3008,
        metadata=about(whole_number(1024, 10240, " (MB)"), "batch function memory; CPU grows with it"),
    )
    batch_timeout_seconds: int = field(
        default=120,
        metadata=about(
            whole_number(
                10, BATCH_TIMEOUT_LIMIT_S, " (seconds; with the retries it must fit a 5-minute Express run)"
            ),
            "batch function timeout",
        ),
    )
    batch_images_per_invocation: int = field(
        default=32,
        metadata=about(
            whole_number(1, BATCH_IMAGES_PER_INVOCATION_LIMIT, " (images)"),
            "the item batcher's `MaxItemsPerBatch`; a batch's result lines stay under Step Functions' 256 KB",
        ),
    )
    batch_reserved_concurrency: int = field(
        default=50,
        metadata=about(
            whole_number(1, 10000, " (concurrent executions)"),
            "the batch function's reserved concurrency: its own share, so jobs never take the API's, "
            "and at least `batch_max_concurrency`",
        ),
    )
    batch_max_concurrency: int = field(
        default=50,
        metadata=about(
            whole_number(1, 10000, " (child executions)"),
            "the most child executions (batch function invocations) one job runs at once, and the "
            "`batch` command's default; at most `batch_reserved_concurrency`",
        ),
    )
    batch_tolerated_failure_percent: int = field(
        default=5,
        metadata=about(
            # The States Language takes a whole percentage here.
            whole_number(0, 100, " (percent of items)"),
            "share of items in failed batches a job tolerates before it fails",
        ),
    )
    batch_input_bucket: str | None = field(
        default=None,
        metadata=about(
            optional(
                "empty (the model bucket) or an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-'",
                _to_bucket_name,
            ),
            "the bucket jobs read images and manifests from; `null` is the model bucket",
        ),
    )
    batch_input_prefixes: tuple[str, ...] = field(
        default=("batch-input/",),
        metadata=about(
            Rule(
                "one or more key prefixes such as 'images/' (a list, or comma-separated with -c)",
                _to_prefix_list,
            ),
            "the only prefixes jobs may list and read",
        ),
    )
    batch_output_bucket: str | None = field(
        default=None,
        metadata=about(
            optional(
                "empty (the model bucket) or an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-'",
                _to_bucket_name,
            ),
            "the bucket jobs write results to; `null` is the model bucket",
        ),
    )
    batch_input_kms_key_arn: str | None = field(
        default=None,
        metadata=about(
            optional(f"empty or a KMS key ARN ({_KEY_ARN_SHAPE})", _to_key_arn),
            "the customer managed key `batch_input_bucket` is encrypted with (SSE-KMS): the batch "
            "function and the state machine may `kms:Decrypt` with it",
        ),
    )
    batch_output_kms_key_arn: str | None = field(
        default=None,
        metadata=about(
            optional(f"empty or a KMS key ARN ({_KEY_ARN_SHAPE})", _to_key_arn),
            "the customer managed key `batch_output_bucket` is encrypted with (SSE-KMS): the state "
            "machine may `kms:GenerateDataKey` and `kms:Decrypt` (multipart results) with it",
        ),
    )
    batch_output_prefix: str = field(
        default="batch-results",
        metadata=about(
            Rule(_PREFIX_ALLOWED, _to_model_prefix),
            "each job writes `<prefix>/<job name>/`; apart from the inputs and the models",
        ),
    )


SETTINGS: tuple[Field[Any], ...] = fields(DeploymentConfig)
CONTEXT_KEYS: tuple[str, ...] = tuple(item.name for item in SETTINGS)


def _rule(item: Field[Any]) -> Rule:
    rule: Rule = item.metadata["rule"]
    return rule


def _shown(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _read(item: Field[Any], context: Mapping[str, object]) -> Any:
    """One key's value: its default when absent, else parsed; raises ConfigError with the message."""
    key = item.name
    if key not in context:
        return item.default
    value = context[key]
    if value is None and item.default is not None:
        raise ConfigError(
            f"context key {key!r} is not set: give it a value in cdk.json or pass -c {key}=<value>"
        )
    try:
        return _rule(item).parse(value)
    except ValueError:
        raise ConfigError(
            f"context key {key!r} has invalid value {_shown(value)}: allowed is {_rule(item).allowed}"
        ) from None


def parse_context(context: Mapping[str, object]) -> DeploymentConfig:
    """Build the DeploymentConfig from the app's context, or raise ConfigError naming each bad key.

    `context` may hold other keys too (CDK's feature flags); a key close to one of ours is
    reported as a likely typo, since CDK would silently ignore it.
    """
    problems = _misspelled_keys(context)
    settings: dict[str, Any] = {}
    for item in SETTINGS:
        try:
            settings[item.name] = _read(item, context)
        except ConfigError as error:
            problems.append(str(error))
            settings[item.name] = None
    problems += _combination_problems(settings)
    if problems:
        raise ConfigError("\n".join(problems))
    return DeploymentConfig(**settings)


def _combination_problems(settings: Mapping[str, Any]) -> list[str]:
    """Rules that involve more than one key (a key whose own value was invalid is None here)."""
    reserved = settings["reserved_concurrency"]
    provisioned = settings["provisioned_concurrency"]
    problems = []
    if reserved is not None and provisioned is not None and provisioned > reserved:
        problems.append(
            f"context key 'provisioned_concurrency' has invalid value {provisioned}: allowed is at most "
            f"reserved_concurrency ({reserved}), since provisioned environments count against the reservation"
        )
    return (
        problems
        + _snap_start_problems(settings)
        + _autoscaling_range_problems(settings)
        + _batch_location_problems(settings)
        + _concurrency_problems(settings)
        + _key_problems(settings)
    )


def _snap_start_problems(settings: Mapping[str, Any]) -> list[str]:
    """What Lambda refuses beside SnapStart: provisioned concurrency, `/tmp` over 512 MB."""
    if not settings["snap_start"]:
        return []
    problems = []
    provisioned = settings["provisioned_concurrency"]
    if provisioned:
        problems.append(
            f"context keys 'snap_start' (true) and 'provisioned_concurrency' ({provisioned}) cannot be "
            "combined: Lambda refuses provisioned concurrency on a SnapStart function. Keep one: "
            "-c provisioned_concurrency=0, or -c snap_start=false"
        )
    storage = settings["ephemeral_storage_mb"]
    if storage is not None and storage > SNAP_START_MAX_EPHEMERAL_STORAGE_MB:
        problems.append(
            f"context keys 'snap_start' (true) and 'ephemeral_storage_mb' ({storage}) cannot be combined: "
            f"Lambda refuses SnapStart with more than {SNAP_START_MAX_EPHEMERAL_STORAGE_MB} MB of ephemeral "
            f"storage. Keep one: -c ephemeral_storage_mb={SNAP_START_MAX_EPHEMERAL_STORAGE_MB}, "
            "or -c snap_start=false"
        )
    return problems


def _concurrency_problems(settings: Mapping[str, Any]) -> list[str]:
    """Reservations Lambda would refuse at deploy, and a map wider than the batch function's reservation."""
    problems = []
    batch = bool(settings["batch_inference"])
    batch_reserved, batch_map = settings["batch_reserved_concurrency"], settings["batch_max_concurrency"]
    if batch and batch_reserved is not None and batch_map is not None and batch_map > batch_reserved:
        problems.append(
            f"context key 'batch_max_concurrency' has invalid value {batch_map}: allowed is at most "
            f"batch_reserved_concurrency ({batch_reserved}), so a job never throttles its own batches"
        )
    limit = settings["account_concurrency_limit"]
    reservations = {
        "reserved_concurrency": settings["reserved_concurrency"],
        "batch_reserved_concurrency": batch_reserved if batch else None,
    }
    reserved = {key: value for key, value in reservations.items() if value is not None}
    if limit is not None and reserved and sum(reserved.values()) > limit - UNRESERVED_MINIMUM:
        named = " + ".join(f"{key} ({value})" for key, value in reserved.items())
        problems.append(
            f"context key {next(iter(reserved))!r} has invalid value {next(iter(reserved.values()))}: "
            f"{named} reserve {sum(reserved.values())} of the account's {limit} concurrent executions "
            f"(account_concurrency_limit); Lambda keeps at least {UNRESERVED_MINIMUM} unreserved and "
            f"refuses the deploy: allowed is at most {limit - UNRESERVED_MINIMUM} in total"
        )
    return problems


def _key_problems(settings: Mapping[str, Any]) -> list[str]:
    """A bucket's KMS key is only for a bucket of the batch path's own (the model bucket is not SSE-KMS)."""
    return [
        f"context key '{kind}_kms_key_arn' is set but '{kind}_bucket' is not: allowed only with "
        "an external bucket encrypted with that key"
        for kind in ("batch_input", "batch_output")
        if settings[f"{kind}_kms_key_arn"] is not None and settings[f"{kind}_bucket"] is None
    ]


def _autoscaling_range_problems(settings: Mapping[str, Any]) -> list[str]:
    """provisioned_concurrency .. provisioned_concurrency_max is the autoscaling range (0 = none)."""
    reserved = settings["reserved_concurrency"]
    provisioned = settings["provisioned_concurrency"]
    maximum = settings["provisioned_concurrency_max"]
    if not maximum or provisioned is None:
        return []
    prefix = f"context key 'provisioned_concurrency_max' has invalid value {maximum}: allowed is"
    if provisioned < 1 or maximum <= provisioned:
        return [
            f"{prefix} 0 (no autoscaling) or above provisioned_concurrency ({provisioned}), which is the "
            "low end of the autoscaling range and must then be at least 1"
        ]
    if reserved is not None and maximum > reserved:
        return [
            f"{prefix} at most reserved_concurrency ({reserved}), since provisioned environments count "
            "against the reservation"
        ]
    return []


def _batch_location_problems(settings: Mapping[str, Any]) -> list[str]:
    """A job must never read its own results, nor overwrite or read the model's objects."""
    output, inputs, model_prefix = (
        settings["batch_output_prefix"],
        settings["batch_input_prefixes"],
        settings["model_prefix"],
    )
    if output is None or inputs is None or model_prefix is None:
        return []
    problems = []
    if settings["batch_input_bucket"] == settings["batch_output_bucket"]:
        problems += [
            f"context key 'batch_output_prefix' has invalid value {output!r}: allowed is a prefix that "
            f"neither contains nor lies inside the input prefix {prefix!r} in the same bucket"
            for prefix in inputs
            if _overlap(f"{output}/", prefix)
        ]
    model = f"{model_prefix}/"
    for key, bucket, prefixes in (
        ("batch_input_prefixes", settings["batch_input_bucket"], inputs),
        ("batch_output_prefix", settings["batch_output_bucket"], [f"{output}/"]),
    ):
        if bucket is None and any(_overlap(model, prefix) for prefix in prefixes):
            problems.append(
                f"context key {key!r} overlaps the model prefix {model!r} in the model bucket: allowed is a "
                "prefix outside it, or another bucket"
            )
    return problems


def _overlap(first: str, second: str) -> bool:
    return first.startswith(second) or second.startswith(first)


def _misspelled_keys(context: Mapping[str, object]) -> list[str]:
    """One message per context key that is not ours (nor CDK's): CDK would silently ignore it."""
    messages = []
    for key in sorted(context):
        if key in CONTEXT_KEYS or ":" in key or "@" in key or key in CDK_PLAIN_CONTEXT_KEYS:
            continue  # ours, or CDK's own (feature flags, lookups and its other keys)
        matches = difflib.get_close_matches(key, CONTEXT_KEYS, n=1, cutoff=0.6)
        hint = f"did you mean {matches[0]!r}?" if matches else "no setting has that name"
        messages.append(f"unknown context key {key!r}: {hint} (every setting: docs/deploy.md, Settings)")
    return messages


def _markdown_default(value: object) -> str:
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def settings_table() -> str:
    """The settings table of docs/deploy.md: every key, its default, what is allowed and what it sets."""
    rows = ["| key | default | allowed | what it sets |", "| --- | --- | --- | --- |"]
    for item in SETTINGS:
        rows.append(
            f"| `{item.name}` | {_markdown_default(item.default)} | {_rule(item).allowed} "
            f"| {item.metadata['help']} |"
        )
    return "\n".join(rows) + "\n"
