"""The inference function: least-privilege role, container image, environment, logs and tracing."""

from __future__ import annotations

import json
from collections.abc import Callable

from aws_cdk.assertions import Capture, Match

from stacks.config import API_INTEGRATION_TIMEOUT_S
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_model_store import MODEL_BUCKET_LOGICAL_ID


def function_properties(synth: Synthesized) -> dict:
    functions = synth.inference.find_resources("AWS::Lambda::Function")
    assert len(functions) == 1
    return next(iter(functions.values()))["Properties"]


def function_role_id(synth: Synthesized) -> str:
    role_arn = function_properties(synth)["Role"]
    assert set(role_arn) == {"Fn::GetAtt"} and role_arn["Fn::GetAtt"][1] == "Arn"
    return role_arn["Fn::GetAtt"][0]


def bucket_output_reference(synth: Synthesized, attribute_prefix: str) -> dict:
    """How the inference stack refers to a model bucket attribute: an output of the model store stack."""
    reference = {
        "Fn::GetStackOutput": {
            "StackName": f"{synth.config.stack_prefix}ModelStore",
            "Region": {"Ref": "AWS::Region"},
            "OutputName": Match.string_like_regexp(f"{attribute_prefix}{MODEL_BUCKET_LOGICAL_ID}"),
        }
    }
    return reference


def test_role_statements_are_exactly_read_model_write_own_logs_and_traces(default_synth: Synthesized) -> None:
    # Given the role the function runs with, and the function's log group
    role = default_synth.inference_json["Resources"][function_role_id(default_synth)]["Properties"]
    log_group_id = function_properties(default_synth)["LoggingConfig"]["LogGroup"]["Ref"]
    # Then it can be assumed by Lambda only, and its one inline policy is captured
    statements = Capture()
    default_synth.inference.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRole",
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                    }
                ],
                "Version": "2012-10-17",
            },
            "Policies": [
                {
                    "PolicyName": "InferenceFunction",
                    "PolicyDocument": {"Statement": statements, "Version": "2012-10-17"},
                }
            ],
            "ManagedPolicyArns": Match.absent(),
        },
    )
    assert role["Policies"][0]["PolicyDocument"]["Statement"] == statements.as_array()
    read_model, write_logs, write_traces = statements.as_array()
    # s3:GetObject under this model's prefix only: no ListBucket, no other prefix, no s3:*
    assert (
        Match.object_equals(
            {
                "Action": "s3:GetObject",
                "Effect": "Allow",
                "Resource": {
                    "Fn::Join": [
                        "",
                        [
                            bucket_output_reference(default_synth, "PublishOutputFnGetAtt"),
                            "/models/demo-shapes/*",
                        ],
                    ]
                },
                "Sid": "ReadModelArtifacts",
            }
        )
        .test(read_model)
        .is_success
    ), read_model
    # logs only into the function's own log group
    assert write_logs == {
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [log_group_id, "Arn"]},
        "Sid": "WriteOwnLogs",
    }
    # X-Ray has no resource-level permissions: the one (acknowledged) Resource "*"
    assert write_traces == {
        "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
        "Effect": "Allow",
        "Resource": "*",
        "Sid": "WriteTraces",
    }


def test_no_other_policy_grants_the_function_anything(default_synth: Synthesized) -> None:
    role_id = function_role_id(default_synth)
    default_synth.inference.resource_count_is("AWS::IAM::Policy", 0)
    default_synth.inference.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    for policy_holder in default_synth.inference.find_resources("AWS::IAM::Role").values():
        for policy in policy_holder["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Action"] != "s3:*" and "s3:*" not in statement["Action"]
    assert role_id in default_synth.inference.find_resources("AWS::IAM::Role")


def test_function_is_a_container_image_for_the_configured_architecture(default_synth: Synthesized) -> None:
    function = function_properties(default_synth)
    assert function["PackageType"] == "Image"
    assert function["Architectures"] == ["x86_64"]
    assert "ImageUri" in function["Code"]
    assert "Runtime" not in function and "Handler" not in function


def test_the_image_is_built_from_lambda_src_for_the_same_platform(
    synthesized: Callable[[str], Synthesized],
) -> None:
    for variant, architecture, platform in (
        ("default", "x86_64", "linux/amd64"),
        ("arm64_dev", "arm64", "linux/arm64"),
    ):
        synth = synthesized(variant)
        assert function_properties(synth)["Architectures"] == [architecture]
        assets = json.loads((synth.assembly_dir / f"{synth.inference_stack_name}.assets.json").read_text())
        (image,) = assets["dockerImages"].values()
        assert image["source"]["platform"] == platform
        staged = synth.assembly_dir / image["source"]["directory"]
        assert (staged / "Dockerfile").is_file()
        assert (staged / "model_store.py").is_file()  # the build context is lambda_src/ itself
        assert function_properties(synth)["Code"]["ImageUri"]["Fn::Sub"].endswith(
            ":" + image["destinations"][next(iter(image["destinations"]))]["imageTag"]
        )


def test_environment_tells_the_handler_where_the_model_is(default_synth: Synthesized) -> None:
    variables = function_properties(default_synth)["Environment"]["Variables"]
    store = variables.pop("MODEL_STORE")
    assert variables == {
        "MODEL_NAME": "demo-shapes",
        "MODEL_VERSION": "latest",
        "MODEL_ENGINE": "torch",
        "MAX_BATCH_SIZE": "8",
        "POWERTOOLS_SERVICE_NAME": "image-classifier",
        "POWERTOOLS_METRICS_NAMESPACE": "PyTorchInference",
    }
    prefix, bucket, path = store["Fn::Join"][1]
    assert (prefix, path) == ("s3://", "/models")
    assert (
        Match.object_equals(bucket_output_reference(default_synth, "PublishOutputRef"))
        .test(bucket)
        .is_success
    )


def test_the_engine_setting_builds_that_engines_image_and_tells_every_function(
    synthesized: Callable[[str], Synthesized],
) -> None:
    for variant, engine in (("default", "torch"), ("batch", "onnxruntime")):
        synth = synthesized(variant)
        assert synth.config.engine == engine
        # The image is built once, with the engine as its build argument (the Dockerfile's ENGINE)
        assets = json.loads((synth.assembly_dir / f"{synth.inference_stack_name}.assets.json").read_text())
        (image,) = assets["dockerImages"].values()
        assert image["source"]["dockerBuildArgs"] == {"ENGINE": engine}
        # and every function of it serves with that engine
        functions = synth.inference.find_resources("AWS::Lambda::Function")
        assert len(functions) == (2 if variant == "batch" else 1)
        for function in functions.values():
            assert function["Properties"]["Environment"]["Variables"]["MODEL_ENGINE"] == engine
        # and the batch command's cost estimate reads it from the stack's outputs
        assert synth.inference_json["Outputs"]["ModelEngine"]["Value"] == engine


def test_cors_origin_reaches_the_function_only_when_set(synthesized: Callable[[str], Synthesized]) -> None:
    variables = function_properties(synthesized("open_with_cors"))["Environment"]["Variables"]
    assert variables["CORS_ALLOW_ORIGIN"] == "https://app.example.com"


def test_pinned_model_version_reaches_the_function(synthesized: Callable[[str], Synthesized]) -> None:
    variables = function_properties(synthesized("arm64_dev"))["Environment"]["Variables"]
    assert variables["MODEL_VERSION"] == "2024-06-01"


def test_timeout_memory_storage_and_tracing(default_synth: Synthesized) -> None:
    function = function_properties(default_synth)
    assert function["Timeout"] == default_synth.config.timeout_seconds
    assert function["Timeout"] < API_INTEGRATION_TIMEOUT_S
    assert function["MemorySize"] == 3008
    assert function["EphemeralStorage"] == {"Size": 512}
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert "ReservedConcurrentExecutions" not in function


def test_function_has_its_own_log_group_with_retention(default_synth: Synthesized) -> None:
    log_group_id = function_properties(default_synth)["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = default_synth.inference_json["Resources"][log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == default_synth.config.log_retention_days


def test_callers_reach_the_live_alias_without_provisioned_concurrency_by_default(
    default_synth: Synthesized,
) -> None:
    default_synth.inference.has_resource_properties(
        "AWS::Lambda::Alias",
        {"Name": "live", "ProvisionedConcurrencyConfig": Match.absent()},
    )


def test_reserved_and_provisioned_concurrency_when_asked(synthesized: Callable[[str], Synthesized]) -> None:
    synth = synthesized("arm64_dev")
    assert function_properties(synth)["ReservedConcurrentExecutions"] == 10
    synth.inference.has_resource_properties(
        "AWS::Lambda::Alias",
        {"Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}},
    )
    assert "SnapStart" not in function_properties(synth)  # Lambda refuses both together


def test_the_function_its_role_log_group_and_alias_keep_their_logical_ids(default_synth: Synthesized) -> None:
    # A changed logical ID makes CloudFormation replace the resource (a new function, an emptied
    # log group), however the constructs that build them are arranged.
    expected = {
        "InferenceFunctionCC679B89": "AWS::Lambda::Function",
        "InferenceFunctionRole0B2EEEA5": "AWS::IAM::Role",
        "InferenceFunctionLogGroupF2643D81": "AWS::Logs::LogGroup",
        "InferenceFunctionAliaslive10ADA547": "AWS::Lambda::Alias",
    }
    resources = default_synth.inference_json["Resources"]

    assert {logical_id: resources[logical_id]["Type"] for logical_id in expected} == expected


def test_snap_start_is_on_by_default_and_callers_reach_a_published_version(
    default_synth: Synthesized,
) -> None:
    # Given the default deployment: SnapStart snapshots published versions (never $LATEST)
    assert function_properties(default_synth)["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    # Then the live alias names a published version of the function, whose snapshot restores serve
    (version_id,) = default_synth.inference.find_resources("AWS::Lambda::Version")
    default_synth.inference.has_resource_properties(
        "AWS::Lambda::Alias", {"Name": "live", "FunctionVersion": {"Fn::GetAtt": [version_id, "Version"]}}
    )
    # and /tmp stays within what SnapStart allows
    assert function_properties(default_synth)["EphemeralStorage"] == {"Size": 512}
