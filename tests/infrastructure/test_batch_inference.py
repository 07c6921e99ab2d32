"""Batch inference (context batch_inference): the batch function, the Distributed Map and both roles.

The "batch" variant reads two prefixes of another bucket ("team-images") and writes its
results under "classified/" in the model bucket; the default deployment has no batch parts.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lambda_src.contract import BATCH_HANDLER, BATCH_STACK_OUTPUTS, StackOutput
from stacks.batch_state_machine import RETRIED_LAMBDA_ERRORS
from stacks.config import BATCH_TIMEOUT_LIMIT_S
from tests.infrastructure.conftest import REPO_ROOT, Synthesized

ASL_VALIDATOR = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"
EXPRESS_MAX_DURATION_S = 300  # an Express workflow execution runs at most 5 minutes
SOURCES = {"prefix": "ClassifyPrefix", "csv": "ClassifyCsv", "json": "ClassifyJson"}
PARTITION = {"Ref": "AWS::Partition"}
INPUT_BUCKET_ARN = {"Fn::Join": ["", ["arn:", PARTITION, ":s3:::team-images"]]}


@pytest.fixture(scope="module")
def batch(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("batch")


def resources(synth: Synthesized, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in synth.inference_json["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(synth: Synthesized, resource_type: str, logical_prefix: str) -> tuple[str, dict[str, Any]]:
    [(logical_id, resource)] = [
        (logical_id, resource)
        for logical_id, resource in resources(synth, resource_type).items()
        if logical_id.startswith(logical_prefix)
    ]
    return logical_id, resource["Properties"]


def definition(synth: Synthesized, *, placeholders: bool = True) -> dict[str, Any]:
    """The state machine's definition, its CloudFormation references replaced by sample values."""
    _, state_machine = only(synth, "AWS::StepFunctions::StateMachine", "Batch")
    pieces = state_machine["DefinitionString"]["Fn::Join"][1]

    def text(piece: Any) -> str:
        if isinstance(piece, str):
            return piece
        if piece == PARTITION:
            return "aws"
        if "Fn::GetAtt" in piece:
            return "arn:aws:lambda:us-east-1:123456789012:function:batch"
        return "model-bucket"  # the model bucket's name, from the model store stack

    return json.loads("".join(text(piece) for piece in pieces))


def statements(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [policy] = properties["Policies"]
    return {
        statement["Sid"]: {key: value for key, value in statement.items() if key != "Sid"}
        for statement in policy["PolicyDocument"]["Statement"]
    }


def api_model_read(synth: Synthesized) -> dict[str, Any]:
    """What the API function's role may read: this model's artifacts in the model bucket."""
    _, api = only(synth, "AWS::Lambda::Function", "InferenceFunction")
    role = synth.inference_json["Resources"][api["Role"]["Fn::GetAtt"][0]]["Properties"]
    return statements(role)["ReadModelArtifacts"]


def model_bucket_objects(synth: Synthesized, key_pattern: str) -> dict[str, Any]:
    """Objects of the model bucket (an output of the model store stack) matching `key_pattern`."""
    model_bucket_arn = api_model_read(synth)["Resource"]["Fn::Join"][1][0]
    assert model_bucket_arn["Fn::GetStackOutput"]["StackName"] == f"{synth.config.stack_prefix}ModelStore"
    return {"Fn::Join": ["", [model_bucket_arn, key_pattern]]}


def input_objects(prefix: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", PARTITION, f":s3:::team-images/{prefix}*"]]}


def test_the_default_deployment_has_no_batch_parts(default_synth: Synthesized) -> None:
    default_synth.inference.resource_count_is("AWS::StepFunctions::StateMachine", 0)
    default_synth.inference.resource_count_is("AWS::Lambda::Function", 1)
    assert not [key for key in default_synth.inference_json["Outputs"] if key.startswith("Batch")]


def test_the_batch_resources_keep_the_logical_ids_they_were_deployed_with(batch: Synthesized) -> None:
    # A changed logical ID makes CloudFormation replace the resource: a new state machine ARN,
    # an emptied log group. The IDs date from when one construct held the whole batch feature.
    expected = {
        "BatchFunctionLogGroup8E6655A7": "AWS::Logs::LogGroup",
        "BatchFunctionRole51C30A4A": "AWS::IAM::Role",
        "BatchFunctionD66237ED": "AWS::Lambda::Function",
        "BatchStateMachineLogGroupCF6D492C": "AWS::Logs::LogGroup",
        "BatchStateMachineRole4E30FD04": "AWS::IAM::Role",
        "BatchStateMachineA1FF2995": "AWS::StepFunctions::StateMachine",
        "BatchChildExecutionsPolicyC1472F7D": "AWS::IAM::Policy",
    }
    batch_resources = {
        logical_id: resource["Type"]
        for logical_id, resource in batch.inference_json["Resources"].items()
        if logical_id.startswith("Batch")
    }

    assert batch_resources == expected


def test_every_output_the_batch_command_reads_is_emitted(batch: Synthesized) -> None:
    assert set(batch.inference_json["Outputs"]) >= BATCH_STACK_OUTPUTS
    assert {StackOutput.MODEL_STORE_URI, StackOutput.MODEL_NAME} <= set(batch.inference_json["Outputs"])


def test_the_batch_function_runs_the_api_image_with_the_batch_entry_point(batch: Synthesized) -> None:
    _, api = only(batch, "AWS::Lambda::Function", "InferenceFunction")
    _, function = only(batch, "AWS::Lambda::Function", "Batch")

    assert function["Code"] == api["Code"]  # the same image asset, built once
    assert function["ImageConfig"] == {"Command": [BATCH_HANDLER]}
    assert "ImageConfig" not in api
    assert (function["MemorySize"], function["Timeout"]) == (4096, 90)
    assert function["Architectures"] == api["Architectures"]
    assert function["TracingConfig"] == {"Mode": "Active"}
    variables = function["Environment"]["Variables"]
    assert variables["MODEL_NAME"] == api["Environment"]["Variables"]["MODEL_NAME"]
    assert variables["MODEL_STORE"] == api["Environment"]["Variables"]["MODEL_STORE"]


def test_snap_start_is_the_api_functions_only(batch: Synthesized) -> None:
    # The state machine invokes the batch function itself ($LATEST), which SnapStart never applies to;
    # a job's environments amortise init over its batches, and each job names its own model version.
    _, api = only(batch, "AWS::Lambda::Function", "InferenceFunction")
    _, function = only(batch, "AWS::Lambda::Function", "Batch")
    assert api["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert "SnapStart" not in function


def test_one_image_is_built_for_both_functions(batch: Synthesized) -> None:
    assets = json.loads((batch.assembly_dir / f"{batch.inference_stack_name}.assets.json").read_text())

    assert len(assets["dockerImages"]) == 1


def test_the_batch_function_reads_only_the_model_and_the_input_prefixes(batch: Synthesized) -> None:
    _, function = only(batch, "AWS::Lambda::Function", "Batch")
    role_id = function["Role"]["Fn::GetAtt"][0]
    role = batch.inference_json["Resources"][role_id]["Properties"]

    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    ]
    assert "ManagedPolicyArns" not in role
    assert statements(role) == {
        "ReadModelArtifacts": api_model_read(batch),  # the very objects the API function may read
        "ReadInputImages": {
            "Action": "s3:GetObject",
            "Effect": "Allow",
            "Resource": [input_objects("photos/"), input_objects("scans/2026/")],
        },
        "WriteOwnLogs": {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [function["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]},
        },
        "WriteTraces": {
            "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            "Effect": "Allow",
            "Resource": "*",
        },
    }
    assert api_model_read(batch)["Resource"] == model_bucket_objects(batch, "/models/demo-shapes/*")
    attached = [
        policy
        for policy in resources(batch, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    assert attached == []  # and nothing else grants it more


def test_the_state_machine_invokes_only_the_function_and_touches_only_its_prefixes(
    batch: Synthesized,
) -> None:
    function_id, _ = only(batch, "AWS::Lambda::Function", "Batch")
    machine_id, machine = only(batch, "AWS::StepFunctions::StateMachine", "Batch")
    role_id = machine["RoleArn"]["Fn::GetAtt"][0]
    role = batch.inference_json["Resources"][role_id]["Properties"]

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"
    }
    granted = statements(role)
    assert granted.pop("DeliverLogs")["Resource"] == "*"  # log delivery APIs have no resource types
    assert granted.pop("WriteTraces")["Resource"] == "*"
    assert granted == {
        "InvokeBatchFunction": {
            "Action": "lambda:InvokeFunction",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [function_id, "Arn"]},
        },
        "ListInputImages": {
            "Action": "s3:ListBucket",
            "Condition": {"StringLike": {"s3:prefix": ["photos/*", "scans/2026/*"]}},
            "Effect": "Allow",
            "Resource": INPUT_BUCKET_ARN,
        },
        "ReadManifests": {
            "Action": "s3:GetObject",
            "Effect": "Allow",
            "Resource": [input_objects("photos/"), input_objects("scans/2026/")],
        },
        "WriteResults": {
            "Action": [
                "s3:AbortMultipartUpload",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject",
            ],
            "Effect": "Allow",
            "Resource": model_bucket_objects(batch, "/classified/*"),
        },
    }
    [child_policy] = [
        policy["Properties"]
        for policy in resources(batch, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    child = {statement["Sid"]: statement for statement in child_policy["PolicyDocument"]["Statement"]}
    assert set(child) == {"StartChildExecutions", "FollowChildExecutions", "RedriveMapRuns"}
    assert child["StartChildExecutions"]["Resource"] == {"Ref": machine_id}
    assert child["StartChildExecutions"]["Action"] == "states:StartExecution"
    for sid in ("FollowChildExecutions", "RedriveMapRuns"):
        arn = json.dumps(child[sid]["Resource"])
        assert ":execution:" in arn and machine_id in arn


def test_the_state_machine_is_standard_logged_and_traced(batch: Synthesized) -> None:
    _, machine = only(batch, "AWS::StepFunctions::StateMachine", "Batch")

    assert machine["StateMachineType"] == "STANDARD"
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["TracingConfiguration"] == {"Enabled": True}


def test_a_job_resolves_its_model_version_once_before_any_batch(batch: Synthesized) -> None:
    states = definition(batch)["States"]
    resolve = states["ResolveModelVersion"]

    assert definition(batch)["StartAt"] == "NameResults"
    assert states["NameResults"]["Next"] == "ResolveModelVersion"
    assert resolve["Parameters"] == {"resolve_model_version.$": "$.model_version"}
    assert resolve["ResultPath"] == "$.model"
    assert resolve["Next"] == "CheckConcurrency"
    for source, name in SOURCES.items():
        batch_input = states[name]["ItemBatcher"]["BatchInput"]
        assert batch_input["model_version.$"] == "$.model.version", source


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_each_item_source_has_a_distributed_map_with_batches_limits_and_results(
    batch: Synthesized, source: str
) -> None:
    states = definition(batch)["States"]
    choice = {rule["StringEquals"]: rule["Next"] for rule in states["ChooseItemSource"]["Choices"]}
    classify = states[choice[source]]

    assert classify["Type"] == "Map"
    assert classify["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}
    reader = classify["ItemReader"]
    expected_reader = {
        "prefix": ("listObjectsV2", {"Bucket": "team-images", "Prefix.$": "$.prefix"}, None),
        "csv": ("getObject", {"Bucket": "team-images", "Key.$": "$.key"}, "CSV"),
        "json": ("getObject", {"Bucket": "team-images", "Key.$": "$.key"}, "JSON"),
    }[source]
    assert reader["Resource"] == f"arn:aws:states:::s3:{expected_reader[0]}"
    assert reader["Parameters"] == expected_reader[1]
    assert reader.get("ReaderConfig", {}).get("InputType") == expected_reader[2]
    assert classify["ItemBatcher"] == {
        "MaxItemsPerBatch": 16,
        "BatchInput": {"bucket": "team-images", "model_version.$": "$.model.version"},
    }
    assert classify["MaxConcurrencyPath"] == "$.max_concurrency"
    assert classify["ToleratedFailurePercentage"] == 3
    assert classify["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": "model-bucket", "Prefix.$": "$.results.prefix"},
        "WriterConfig": {"OutputType": "JSONL", "Transformation": "FLATTEN"},
    }
    [task] = classify["ItemProcessor"]["States"].values()
    assert task["Resource"] == "arn:aws:lambda:us-east-1:123456789012:function:batch"
    assert task["End"] is True


def test_results_go_to_a_folder_named_after_the_job_under_the_output_prefix(batch: Synthesized) -> None:
    name_results = definition(batch)["States"]["NameResults"]

    assert name_results["Parameters"] == {"prefix.$": "States.Format('classified/{}', $$.Execution.Name)"}
    assert name_results["ResultPath"] == "$.results"
    outputs = batch.inference_json["Outputs"]
    assert outputs[StackOutput.BATCH_OUTPUT_LOCATION]["Value"]["Fn::Join"][1][-1] == "/classified/"
    assert outputs[StackOutput.BATCH_INPUT_LOCATIONS]["Value"] == (
        "s3://team-images/photos/,s3://team-images/scans/2026/"
    )
    assert outputs[StackOutput.BATCH_MAX_CONCURRENCY]["Value"] == "40"
    assert outputs[StackOutput.BATCH_MEMORY_SIZE_MB]["Value"] == "4096"
    assert outputs[StackOutput.BATCH_IMAGES_PER_INVOCATION]["Value"] == "16"


def test_concurrency_above_the_configured_maximum_fails_the_job(batch: Synthesized) -> None:
    states = definition(batch)["States"]
    [rule] = states["CheckConcurrency"]["Choices"]

    assert {"Variable": "$.max_concurrency", "NumericGreaterThan": 40} in rule["Or"]
    assert {"Variable": "$.max_concurrency", "NumericLessThan": 1} in rule["Or"]
    assert states[rule["Next"]]["Type"] == "Fail"
    assert states["CheckConcurrency"]["Default"] == "ChooseItemSource"


def test_lambda_throttling_and_service_errors_are_retried_with_backoff(batch: Synthesized) -> None:
    states = definition(batch)["States"]
    tasks = [states["ResolveModelVersion"]] + [
        task for name in SOURCES.values() for task in states[name]["ItemProcessor"]["States"].values()
    ]

    for task in tasks:
        [retry] = task["Retry"]
        assert retry["ErrorEquals"] == list(RETRIED_LAMBDA_ERRORS)
        assert "Lambda.TooManyRequestsException" in retry["ErrorEquals"]
        assert retry["BackoffRate"] > 1 and retry["IntervalSeconds"] >= 1 and retry["MaxAttempts"] >= 3
        assert retry["JitterStrategy"] == "FULL"
        # Every retry's wait, capped, plus the longest function timeout fits an Express child's 5 minutes.
        waits = [
            min(retry["IntervalSeconds"] * retry["BackoffRate"] ** attempt, retry["MaxDelaySeconds"])
            for attempt in range(retry["MaxAttempts"])
        ]
        assert sum(waits) + BATCH_TIMEOUT_LIMIT_S < EXPRESS_MAX_DURATION_S


def validate_asl(definition_json: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition_json))
    return subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_definition_is_valid_amazon_states_language(batch: Synthesized, tmp_path: Path) -> None:
    assert ASL_VALIDATOR.exists(), "run npm ci: package.json pins asl-validator"
    valid = validate_asl(definition(batch), tmp_path)
    assert valid.returncode == 0, valid.stdout + valid.stderr

    # The validator can fail: the same definition with a Distributed Map missing its processor.
    broken = definition(batch)
    del broken["States"]["ClassifyPrefix"]["ItemProcessor"]
    assert validate_asl(broken, tmp_path).returncode != 0
