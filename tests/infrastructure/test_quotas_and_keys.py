"""What Lambda, Step Functions and S3 would refuse or break at deploy is refused or done right at synth:
reservations that leave the account under 100 unreserved executions, a map wider than the batch
function's reservation, unknown context keys, a state machine log group outside
/aws/vendedlogs/states/, and SSE-KMS buckets without exactly the KMS grants each role needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stacks.config import ConfigError, parse_context
from tests.infrastructure.conftest import VARIANTS, Synthesized
from tests.infrastructure.test_batch_inference import only, resources, statements

INPUT_KEY = VARIANTS["batch_external_kms"]["batch_input_kms_key_arn"]
OUTPUT_KEY = VARIANTS["batch_external_kms"]["batch_output_kms_key_arn"]
VIA_S3 = {
    "StringEquals": {"kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
}


@pytest.fixture(scope="module")
def kms(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("batch_external_kms")


def role_statements(synth: Synthesized, role_id: str) -> dict[str, dict[str, Any]]:
    return statements(synth.inference_json["Resources"][role_id]["Properties"])


def test_the_state_machine_logs_to_a_vended_logs_group(synthesized: Callable[[str], Synthesized]) -> None:
    synth = synthesized("batch")
    log_group_id, log_group = only(synth, "AWS::Logs::LogGroup", "BatchStateMachine")
    assert (
        log_group["LogGroupName"] == f"/aws/vendedlogs/states/{synth.inference_stack_name}-BatchStateMachine"
    )
    _, machine = only(synth, "AWS::StepFunctions::StateMachine", "Batch")
    (destination,) = machine["LoggingConfiguration"]["Destinations"]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {"Fn::GetAtt": [log_group_id, "Arn"]}


def test_the_batch_function_has_its_own_reservation_and_the_map_stays_within_it(
    synthesized: Callable[[str], Synthesized], kms: Synthesized
) -> None:
    batch = synthesized("batch")
    _, function = only(batch, "AWS::Lambda::Function", "Batch")
    assert function["ReservedConcurrentExecutions"] == 50  # the default
    assert batch.config.batch_max_concurrency <= function["ReservedConcurrentExecutions"]
    _, function = only(kms, "AWS::Lambda::Function", "Batch")
    assert function["ReservedConcurrentExecutions"] == 80
    # and the API function's reservation is the API's own setting
    (api_function,) = [
        resource["Properties"]
        for logical_id, resource in resources(kms, "AWS::Lambda::Function").items()
        if logical_id.startswith("InferenceFunction")
    ]
    assert api_function["ReservedConcurrentExecutions"] == 300


def test_kms_grants_are_exactly_what_each_role_needs_on_its_bucket_key(kms: Synthesized) -> None:
    _, function = only(kms, "AWS::Lambda::Function", "Batch")
    batch_function = role_statements(kms, function["Role"]["Fn::GetAtt"][0])
    # The batch function reads images: decrypt with the input key, through S3 only
    assert batch_function["DecryptInputs"] == {
        "Action": "kms:Decrypt",
        "Condition": VIA_S3,
        "Effect": "Allow",
        "Resource": INPUT_KEY,
    }
    assert "EncryptResults" not in batch_function
    _, machine = only(kms, "AWS::StepFunctions::StateMachine", "Batch")
    state_machine = role_statements(kms, machine["RoleArn"]["Fn::GetAtt"][0])
    # The state machine reads manifests and writes results (multipart uploads need Decrypt too)
    assert state_machine["DecryptInputs"] == batch_function["DecryptInputs"]
    assert state_machine["EncryptResults"] == {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Condition": VIA_S3,
        "Effect": "Allow",
        "Resource": OUTPUT_KEY,
    }
    # nothing else anywhere grants a KMS action
    kms_actions = [
        (sid, statement["Action"])
        for role in (batch_function, state_machine)
        for sid, statement in role.items()
        if "kms:" in str(statement["Action"])
    ]
    assert sorted(sid for sid, _ in kms_actions) == ["DecryptInputs", "DecryptInputs", "EncryptResults"]


def test_without_keys_no_role_gets_a_kms_grant(synthesized: Callable[[str], Synthesized]) -> None:
    batch = synthesized("batch")
    for role in resources(batch, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            assert "kms:" not in str(policy["PolicyDocument"]), policy


def parse(**overrides: object) -> None:
    parse_context({key: str(value) for key, value in overrides.items()})


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"reserved_concurrency": 901},
            r"reserved_concurrency \(901\) reserve 901 of the account's 1000 .* at most 900 in total",
        ),
        (
            {
                "reserved_concurrency": 400,
                "batch_inference": "true",
                "batch_reserved_concurrency": 60,
                "batch_max_concurrency": 60,
                "account_concurrency_limit": 500,
            },
            r"reserved_concurrency \(400\) \+ batch_reserved_concurrency \(60\) reserve 460 of the "
            r"account's 500 .* at most 400 in total",
        ),
        (
            {"batch_inference": "true", "batch_reserved_concurrency": 20},
            r"'batch_max_concurrency' has invalid value 50: allowed is at most "
            r"batch_reserved_concurrency \(20\)",
        ),
        ({"account_concurrency_limit": 50}, r"'account_concurrency_limit' has invalid value '50'"),
        (
            {"batch_input_kms_key_arn": INPUT_KEY},
            r"'batch_input_kms_key_arn' is set but 'batch_input_bucket' is not",
        ),
        (
            {"batch_output_bucket": "team-results", "batch_output_kms_key_arn": "alias/my-key"},
            r"'batch_output_kms_key_arn' has invalid value 'alias/my-key': allowed is empty or a KMS key ARN",
        ),
        ({"enigne": "onnxruntime"}, r"unknown context key 'enigne': did you mean 'engine'\?"),
        ({"colour": "blue"}, r"unknown context key 'colour': no setting has that name"),
        ({"memory_mb": 4096}, r"unknown context key 'memory_mb': did you mean 'memory_size_mb'\?"),
    ],
    ids=[
        "api reservation",
        "api and batch reservations",
        "map wider than the batch reservation",
        "account limit below 100",
        "key without its bucket",
        "not a key ARN",
        "misspelled engine",
        "unknown key",
        "misspelled key",
    ],
)
def test_settings_lambda_or_the_app_would_not_honour_are_refused(
    settings: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        parse(**settings)


def test_cdk_own_keys_and_reservations_that_fit_are_accepted() -> None:
    config = parse_context(
        {
            "@aws-cdk/aws-lambda:recognizeLayerVersion": True,  # feature flags
            "aws:cdk:enable-path-metadata": True,  # the CLI's own
            "availability-zones:account=111122223333:region=eu-west-1": ["eu-west-1a"],  # lookups
            "acknowledged-issue-numbers": [32775],
            "reserved_concurrency": "850",
            "batch_inference": "true",
            "batch_reserved_concurrency": "50",
        }
    )
    assert (config.reserved_concurrency, config.batch_reserved_concurrency) == (850, 50)
    assert config.account_concurrency_limit == 1000
