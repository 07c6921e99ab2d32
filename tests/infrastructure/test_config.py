"""The deployment settings: declared defaults, cdk.json and `-c` values, a clear message for every bad one."""

from __future__ import annotations

import glob
import json
import sysconfig
import tarfile
from pathlib import Path

import pytest

from stacks.config import (
    API_INTEGRATION_TIMEOUT_S,
    CONTEXT_KEYS,
    ConfigError,
    DeploymentConfig,
    parse_context,
    settings_table,
)


def parse_with(cdk_context: dict[str, object], **overrides: object) -> DeploymentConfig:
    return parse_context({**cdk_context, **overrides})


def test_defaults_are_declared_once_and_cdk_json_does_not_repeat_them(cdk_context: dict[str, object]) -> None:
    # Given the context shipped in cdk.json (CDK's feature flags only)
    # When it is parsed
    config = parse_context(cdk_context)
    # Then every setting takes its declared default, and the defaults are the documented ones
    assert not set(CONTEXT_KEYS) & set(cdk_context)
    assert config == DeploymentConfig() == parse_context({})
    assert config.auth_mode == "iam"
    assert config.architecture == "x86_64"
    assert config.model_version == "latest"
    assert config.model_prefix == "models"
    assert config.bucket_removal_policy == "retain"
    assert config.reserved_concurrency is None
    assert config.provisioned_concurrency == 0
    assert config.snap_start is True
    assert config.cors_allow_origin is None
    assert config.timeout_seconds < API_INTEGRATION_TIMEOUT_S


def test_cdk_json_feature_flags_are_the_recommended_ones_of_the_installed_cdk(
    cdk_context: dict[str, object],
) -> None:
    # Given the flags `cdk init` would write for the installed aws-cdk-lib
    site_packages = Path(sysconfig.get_paths()["purelib"])
    (package,) = glob.glob(str(site_packages / "aws_cdk" / "_jsii" / "aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(package) as archive:
        member = archive.extractfile("package/recommended-feature-flags.json")
        assert member is not None
        recommended = json.load(member)
    # Then cdk.json carries exactly those flags (our own settings are the other keys)
    flags = {key: value for key, value in cdk_context.items() if key not in CONTEXT_KEYS}
    assert flags == recommended


def test_values_given_with_dash_c_arrive_as_strings_and_parse(cdk_context: dict[str, object]) -> None:
    config = parse_with(
        cdk_context,
        memory_size_mb="4096",
        timeout_seconds="28",
        throttle_rate_limit="2.5",
        reserved_concurrency="20",
        provisioned_concurrency="20",
        snap_start="false",
        api_gateway_cloudwatch_role="False",
        auth_mode="API_KEY",
        cors_allow_origin="*",
        model_version="LATEST",
        model_prefix="/team/models/",
        log_retention_days="365",
    )
    assert config.memory_size_mb == 4096
    assert config.timeout_seconds == 28
    assert config.throttle_rate_limit == 2.5
    assert config.reserved_concurrency == 20
    assert config.provisioned_concurrency == 20
    assert config.snap_start is False
    assert config.api_gateway_cloudwatch_role is False
    assert config.auth_mode == "api_key"
    assert config.cors_allow_origin == "*"
    assert config.model_version == "latest"
    assert config.model_prefix == "team/models"
    assert config.log_retention_days == 365


def test_a_key_given_in_context_overrides_its_default(cdk_context: dict[str, object]) -> None:
    config = parse_with(cdk_context, memory_size_mb=4096, architecture="arm64")
    assert (config.memory_size_mb, config.architecture) == (4096, "arm64")
    assert config.timeout_seconds == DeploymentConfig().timeout_seconds


@pytest.mark.parametrize("empty", ["", "none", "null", None])
def test_optional_settings_can_be_switched_off(cdk_context: dict[str, object], empty: object) -> None:
    config = parse_with(cdk_context, reserved_concurrency=empty, cors_allow_origin=empty)
    assert config.reserved_concurrency is None
    assert config.cors_allow_origin is None


# key, bad value, a piece of the "allowed" text the message must contain
INVALID_VALUES = [
    ("stack_prefix", "9lives", "starting with a letter"),
    ("stack_prefix", "a_b", "letters, digits or '-'"),
    ("model_name", "../etc", "letters, digits"),
    ("model_name", "", "letters, digits"),
    ("model_version", "v 2", "'latest' or a published version"),
    ("model_prefix", "models/../x", "names separated by '/'"),
    ("model_prefix", "/", "names separated by '/'"),
    ("architecture", "amd64", "one of x86_64, arm64"),
    ("engine", "tensorflow", "one of torch, onnxruntime"),
    ("memory_size_mb", "512", "from 1024 to 10240 (MB)"),
    ("memory_size_mb", "10241", "from 1024 to 10240 (MB)"),
    ("memory_size_mb", "3GB", "a whole number"),
    ("memory_size_mb", True, "a whole number"),
    ("timeout_seconds", "29", f"below API Gateway's {API_INTEGRATION_TIMEOUT_S} s integration timeout"),
    ("timeout_seconds", 0, "from 1 to 28"),
    ("timeout_seconds", "2.5", "a whole number"),
    ("ephemeral_storage_mb", 100, "from 512 to 10240 (MB)"),
    ("max_batch_size", 0, "from 1 to 64 (images)"),
    ("max_batch_size", 65, "from 1 to 64 (images)"),
    ("reserved_concurrency", "0", "empty/null (no reservation) or a whole number"),
    ("reserved_concurrency", "lots", "empty/null (no reservation) or a whole number"),
    ("account_concurrency_limit", "99", "from 100 to 1000000 (concurrent executions)"),
    ("account_concurrency_limit", "many", "from 100 to 1000000"),
    ("provisioned_concurrency", -1, "from 0 to 10000"),
    ("snap_start", "sometimes", "true or false"),
    ("auth_mode", "cognito", "one of iam, api_key, none"),
    ("auth_mode", None, None),
    ("throttle_rate_limit", "0", "a number above 0"),
    ("throttle_rate_limit", "fast", "a number above 0"),
    ("throttle_burst_limit", 0, "from 1 to 5000"),
    ("api_key_quota_per_day", "-5", "requests per day"),
    ("cors_allow_origin", "https://app.example.com/path", "one origin such as"),
    ("cors_allow_origin", "app.example.com", "one origin such as"),
    ("log_retention_days", 10, "one of 1, 3, 5, 7, 14, 30"),
    ("log_retention_days", "forever", "one of 1, 3, 5, 7, 14, 30"),
    ("execution_log_level", "debug", "one of error, info"),
    ("api_gateway_cloudwatch_role", "yes", "true or false"),
    ("metrics_namespace", "AWS/Lambda", "not starting with 'AWS/'"),
    ("metrics_namespace", "", "1-255 letters"),
    ("bucket_removal_policy", "snapshot", "one of retain, destroy"),
    ("noncurrent_version_expiration_days", 0, "from 1 to 3650 (days)"),
    ("provisioned_concurrency_max", -1, "from 0 to 10000 (0 = no autoscaling)"),
    ("deployment_preference", "blue_green", "one of all_at_once, canary_10percent_5minutes"),
    ("alarm_5xx_rate_percent", "0", "a number above 0 and at most 100 (percent of requests)"),
    ("alarm_5xx_rate_percent", "1%", "a number above 0"),
    ("alarm_p99_latency_ms", 30000, "from 10 to 29000 (milliseconds)"),
    ("alarm_function_errors", 0, "from 1 to 100000 (errors per minute)"),
    ("alarm_throttles", "many", "a whole number"),
    ("alarm_model_load_failures", 0, "from 1 to 10000 (failures per minute)"),
    ("alarm_email", "ops@", "one e-mail address"),
    ("alarm_email", "a@b.com, c@d.com", "one e-mail address"),
    ("batch_inference", "yes", "true or false"),
    ("batch_memory_size_mb", 512, "from 1024 to 10240 (MB)"),
    ("batch_timeout_seconds", 151, "from 10 to 150 (seconds"),
    ("batch_images_per_invocation", 500, "from 1 to 100 (images)"),
    ("batch_max_concurrency", 0, "from 1 to 10000 (child executions)"),
    ("batch_reserved_concurrency", 0, "from 1 to 10000 (concurrent executions)"),
    ("batch_input_kms_key_arn", "alias/images", "empty or a KMS key ARN"),
    ("batch_output_kms_key_arn", "arn:aws:kms:eu-west-1:1234:key/x", "empty or a KMS key ARN"),
    ("batch_tolerated_failure_percent", "2.5", "from 0 to 100 (percent of items)"),
    ("batch_input_bucket", "Team_Images", "an S3 bucket name"),
    ("batch_input_prefixes", [], "one or more key prefixes"),
    ("batch_input_prefixes", "photos/,../x", "one or more key prefixes"),
    ("batch_output_bucket", "s3://out", "an S3 bucket name"),
    ("batch_output_prefix", "/", "one or more names separated by '/'"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), INVALID_VALUES)
def test_each_invalid_value_is_rejected_naming_key_value_and_what_is_allowed(
    cdk_context: dict[str, object], key: str, value: object, allowed: str | None
) -> None:
    # Given one bad value on top of the valid defaults
    # When the context is parsed
    with pytest.raises(ConfigError) as raised:
        parse_with(cdk_context, **{key: value})
    message = str(raised.value)
    # Then the message names the key, the value given and what is allowed
    assert f"'{key}'" in message
    if allowed is None:
        assert "is not set" in message and f"-c {key}=" in message
    else:
        shown = repr(value) if isinstance(value, str) else json.dumps(value)
        assert shown in message
        assert allowed in message


def test_every_setting_has_an_invalid_value_case() -> None:
    assert {key for key, _, _ in INVALID_VALUES} == set(CONTEXT_KEYS)


def test_batch_input_prefixes_come_as_a_list_or_comma_separated(cdk_context: dict[str, object]) -> None:
    from_list = parse_with(cdk_context, batch_input_prefixes=["photos", "scans/2026/"])
    from_cli = parse_with(cdk_context, batch_input_prefixes="photos/, scans/2026")

    assert from_list.batch_input_prefixes == from_cli.batch_input_prefixes == ("photos/", "scans/2026/")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_output_prefix": "images/results"}, "inside the input prefix 'images/'"),
        ({"batch_output_prefix": "images"}, "inside the input prefix 'images/'"),
        ({"batch_input_prefixes": "models/demo-shapes/"}, "overlaps the model prefix 'models/'"),
        ({"batch_output_prefix": "models"}, "overlaps the model prefix 'models/'"),
    ],
)
def test_batch_jobs_never_read_their_results_or_touch_the_models(
    cdk_context: dict[str, object], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_with(cdk_context, **{"batch_input_prefixes": "images/", **overrides})


def test_batch_locations_in_other_buckets_may_share_names(cdk_context: dict[str, object]) -> None:
    config = parse_with(
        cdk_context,
        batch_input_bucket="team-images",
        batch_input_prefixes="models/",
        batch_output_bucket="team-results",
        batch_output_prefix="models",
    )

    assert (config.batch_input_bucket, config.batch_output_bucket) == ("team-images", "team-results")
    assert (config.batch_input_prefixes, config.batch_output_prefix) == (("models/",), "models")


def test_provisioned_concurrency_above_the_reservation_is_rejected(cdk_context: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"'provisioned_concurrency' has invalid value 5: .*reserved_concurrency \(4\)"
    ):
        parse_with(cdk_context, reserved_concurrency=4, provisioned_concurrency=5)


def test_snap_start_refuses_what_lambda_refuses_beside_it_naming_both_keys(
    cdk_context: dict[str, object],
) -> None:
    # Given SnapStart (on by default) and provisioned concurrency, and more than 512 MB of /tmp
    with pytest.raises(ConfigError) as raised:
        parse_with(cdk_context, provisioned_concurrency="2", ephemeral_storage_mb="1024")
    # Then synth stops with one message for each, naming both keys and the way out
    message = str(raised.value)
    assert "context keys 'snap_start' (true) and 'provisioned_concurrency' (2) cannot be combined" in message
    assert "context keys 'snap_start' (true) and 'ephemeral_storage_mb' (1024) cannot be combined" in message
    assert "-c provisioned_concurrency=0, or -c snap_start=false" in message
    assert "-c ephemeral_storage_mb=512, or -c snap_start=false" in message
    # And without SnapStart both are allowed; with it, 512 MB is
    assert parse_with(
        cdk_context, snap_start="false", provisioned_concurrency="2", ephemeral_storage_mb="1024"
    )
    assert parse_with(cdk_context, ephemeral_storage_mb="512").snap_start


def test_a_misspelled_key_is_reported_with_the_likely_meaning(cdk_context: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown context key 'memory_mb': did you mean 'memory_size_mb'\?"
    ):
        parse_with(cdk_context, memory_mb="4096")


def test_all_problems_are_reported_at_once(cdk_context: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_with(cdk_context, architecture="sparc", auth_mode="open", timeout_seconds=60)
    lines = str(raised.value).splitlines()
    assert len(lines) == 3
    assert [line.split("'")[1] for line in lines] == ["architecture", "timeout_seconds", "auth_mode"]


def test_settings_table_shows_each_default_and_what_is_allowed() -> None:
    rows = {row.split(" | ")[0].strip("| `"): row for row in settings_table().splitlines()[2:]}
    assert list(rows) == list(CONTEXT_KEYS)
    assert "| `iam` | one of iam, api_key, none |" in rows["auth_mode"]
    assert (
        "| `null` | empty/null (no reservation) or a whole number from 1 to 10000 |"
        in rows["reserved_concurrency"]
    )
    assert "| `3008` | a whole number from 1024 to 10240 (MB) |" in rows["memory_size_mb"]
    assert "| `true` | true or false |" in rows["api_gateway_cloudwatch_role"]
