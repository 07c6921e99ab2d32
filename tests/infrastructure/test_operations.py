"""Operations in the synthesized inference stack: alarms, notifications, dashboard, rollout, warm capacity."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from lambda_src.contract import ModelEngine
from lambda_src.model_store import ModelLocation
from lambda_src.service import InferenceService
from lambda_src.telemetry import Telemetry
from stacks.config import Architecture, ConfigError, DeploymentPreference, parse_context
from stacks.inference_function import InferenceFunction
from stacks.rollout import deployment_config
from tests.infrastructure.conftest import Synthesized

# Paging: the whole service. Rolling back: the version being deployed, and never latency.
PAGING_ALARM_NAMES = ("Api5xxRate", "ApiP99Latency", "FunctionErrors", "Throttles", "ModelLoadFailures")
ROLLBACK_ALARM_NAMES = ("DeployedVersion5xxRate", "DeployedVersionErrors", "DeployedVersionModelLoadFailures")
ALARM_NAMES = PAGING_ALARM_NAMES + ROLLBACK_ALARM_NAMES


def resources(synth: Synthesized, resource_type: str) -> dict[str, dict[str, Any]]:
    return synth.inference.find_resources(resource_type)


def alarms_by_name(synth: Synthesized) -> dict[str, tuple[str, dict[str, Any]]]:
    """Alarm name suffix (after '<stack>-') -> (logical ID, properties)."""
    prefix = f"{synth.inference_stack_name}-"
    found = {}
    for logical_id, alarm in resources(synth, "AWS::CloudWatch::Alarm").items():
        name = alarm["Properties"]["AlarmName"]
        assert name.startswith(prefix)
        found[name.removeprefix(prefix)] = (logical_id, alarm["Properties"])
    return found


def metric_of(alarm: dict[str, Any]) -> dict[str, Any]:
    (query,) = alarm["Metrics"]
    return query["MetricStat"]


def dimensions(metric_stat: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in metric_stat["Metric"]["Dimensions"]}


def single_id(synth: Synthesized, resource_type: str) -> str:
    (logical_id,) = resources(synth, resource_type)
    return logical_id


def function_id(synth: Synthesized) -> str:
    return single_id(synth, "AWS::Lambda::Function")


def dashboard_body(synth: Synthesized) -> dict[str, Any]:
    """The dashboard JSON with each CloudFormation reference replaced by a readable placeholder."""
    (dashboard,) = resources(synth, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else _placeholder(part) for part in parts)
    return json.loads(text)


def _placeholder(reference: dict[str, Any]) -> str:
    if "Ref" in reference:
        return f"<{reference['Ref']}>"
    resource, attribute = reference["Fn::GetAtt"]
    return f"<{resource}.{attribute}>"


def test_each_alarm_exists_with_the_default_thresholds(default_synth: Synthesized) -> None:
    alarms = alarms_by_name(default_synth)
    assert sorted(alarms) == sorted(ALARM_NAMES)
    thresholds = {
        name: (props["Threshold"], props["ComparisonOperator"]) for name, (_, props) in alarms.items()
    }
    assert thresholds == {
        "Api5xxRate": (0.01, "GreaterThanThreshold"),  # 1% of requests
        "ApiP99Latency": (5000, "GreaterThanThreshold"),
        "FunctionErrors": (1, "GreaterThanOrEqualToThreshold"),
        "Throttles": (1, "GreaterThanOrEqualToThreshold"),
        "ModelLoadFailures": (1, "GreaterThanOrEqualToThreshold"),
        "DeployedVersion5xxRate": (0.01, "GreaterThanThreshold"),
        "DeployedVersionErrors": (1, "GreaterThanOrEqualToThreshold"),
        "DeployedVersionModelLoadFailures": (1, "GreaterThanOrEqualToThreshold"),
    }
    for _, props in alarms.values():
        assert props["TreatMissingData"] == "notBreaching"  # no traffic is not an outage
        assert "AlarmActions" not in props  # no e-mail address configured


def test_thresholds_come_from_context(synthesized: Callable[[str], Synthesized]) -> None:
    alarms = alarms_by_name(synthesized("operations"))
    assert {name: props["Threshold"] for name, (_, props) in alarms.items()} == {
        "Api5xxRate": 0.025,
        "ApiP99Latency": 3000,
        "FunctionErrors": 3,
        "Throttles": 10,
        "ModelLoadFailures": 2,
        "DeployedVersion5xxRate": 0.025,
        "DeployedVersionErrors": 3,
        "DeployedVersionModelLoadFailures": 2,
    }


def test_api_alarms_watch_the_stage_by_name(default_synth: Synthesized) -> None:
    alarms = alarms_by_name(default_synth)
    api_dimensions = {"ApiName": f"{default_synth.inference_stack_name}-api", "Stage": "v1"}
    rate = metric_of(alarms["Api5xxRate"][1])
    assert (rate["Metric"]["Namespace"], rate["Metric"]["MetricName"], rate["Stat"]) == (
        "AWS/ApiGateway",
        "5XXError",
        "Average",  # 0 or 1 per request: the average is the 5XX rate
    )
    latency = metric_of(alarms["ApiP99Latency"][1])
    assert (latency["Metric"]["MetricName"], latency["Stat"]) == ("Latency", "p99")
    for metric in (rate, latency):
        # Literal names, not references: the alarms must not depend on the API (see InferenceMetrics)
        assert dimensions(metric) == api_dimensions
        assert metric["Period"] == 60
    for name in ("Api5xxRate", "ApiP99Latency"):
        props = alarms[name][1]
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (3, 2)
    stages = resources(default_synth, "AWS::ApiGateway::Stage").values()
    assert [stage["Properties"]["StageName"] for stage in stages] == ["v1"]
    (api,) = resources(default_synth, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["Name"] == api_dimensions["ApiName"]


def test_function_alarms_watch_invocations_through_the_live_alias(default_synth: Synthesized) -> None:
    alarms = alarms_by_name(default_synth)
    function_ref = {"Ref": function_id(default_synth)}
    for name, metric_name in (("FunctionErrors", "Errors"), ("Throttles", "Throttles")):
        metric = metric_of(alarms[name][1])
        assert (metric["Metric"]["Namespace"], metric["Metric"]["MetricName"], metric["Stat"]) == (
            "AWS/Lambda",
            metric_name,
            "Sum",
        )
        assert dimensions(metric) == {
            "FunctionName": function_ref,
            "Resource": {"Fn::Join": ["", [function_ref, ":live"]]},
        }


def test_model_load_alarm_watches_exactly_the_metric_the_handler_writes(
    default_synth: Synthesized, tmp_path: Path
) -> None:
    # Given the handler configured with the function's environment from the template, and an empty store
    (function,) = resources(default_synth, "AWS::Lambda::Function").values()
    environment = function["Properties"]["Environment"]["Variables"]
    stream = io.StringIO()
    telemetry = Telemetry(
        service=environment["POWERTOOLS_SERVICE_NAME"],
        namespace=environment["POWERTOOLS_METRICS_NAMESPACE"],
        stream=stream,
    )
    service = InferenceService(ModelLocation(str(tmp_path), "missing-model"), telemetry=telemetry)
    # When a model load fails
    assert service.load() is False
    # Then the EMF line it writes is the metric the alarm watches, with the same dimensions
    emf = [json.loads(line) for line in stream.getvalue().splitlines() if '"_aws"' in line]
    (directive,) = [d for line in emf for d in line["_aws"]["CloudWatchMetrics"]]
    (line,) = emf
    alarm_metric = metric_of(alarms_by_name(default_synth)["ModelLoadFailures"][1])
    assert alarm_metric["Metric"]["Namespace"] == directive["Namespace"] == "PyTorchInference"
    assert alarm_metric["Metric"]["MetricName"] in [metric["Name"] for metric in directive["Metrics"]]
    assert line[alarm_metric["Metric"]["MetricName"]] == [1.0]
    assert directive["Dimensions"] == [list(dimensions(alarm_metric))]
    assert dimensions(alarm_metric) == {"service": line["service"]}
    assert alarm_metric["Stat"] == "Sum"


def test_no_topic_without_an_email_address(default_synth: Synthesized) -> None:
    default_synth.inference.resource_count_is("AWS::SNS::Topic", 0)
    default_synth.inference.resource_count_is("AWS::KMS::Key", 0)
    assert "AlarmTopicArn" not in default_synth.inference_json["Outputs"]


def test_alarms_email_through_an_encrypted_tls_only_topic_when_asked(
    synthesized: Callable[[str], Synthesized],
) -> None:
    synth = synthesized("operations")
    topic_id = single_id(synth, "AWS::SNS::Topic")
    key_id = single_id(synth, "AWS::KMS::Key")
    topic = resources(synth, "AWS::SNS::Topic")[topic_id]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    key = resources(synth, "AWS::KMS::Key")[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    # CloudWatch must be able to use the key, or alarm notifications silently fail
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Resource": "*",
    } in key["KeyPolicy"]["Statement"]
    synth.inference.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": {"Ref": topic_id}},
    )
    (policy,) = resources(synth, "AWS::SNS::TopicPolicy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["AllowPublishThroughSSLOnly"]["Effect"] == "Deny"
    assert statements["AllowPublishThroughSSLOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    publish = statements["AllowThisAccountsAlarms"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # Every paging alarm notifies on alarm and on recovery; the rollback alarms act through CodeDeploy
    alarms = alarms_by_name(synth)
    for name in PAGING_ALARM_NAMES:
        assert alarms[name][1]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarms[name][1]["OKActions"] == [{"Ref": topic_id}]
    for name in ROLLBACK_ALARM_NAMES:
        assert "AlarmActions" not in alarms[name][1]
    assert synth.inference_json["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_rollback_alarms_see_only_the_version_being_deployed(default_synth: Synthesized) -> None:
    alarms = alarms_by_name(default_synth)
    (version_id,) = resources(default_synth, "AWS::Lambda::Version")
    deployed = {"Fn::GetAtt": [version_id, "Version"]}
    function_ref = {"Ref": function_id(default_synth)}
    # Lambda's own errors of the alias's invocations that ran the new version (ExecutedVersion)
    errors = metric_of(alarms["DeployedVersionErrors"][1])
    assert (errors["Metric"]["Namespace"], errors["Metric"]["MetricName"], errors["Stat"]) == (
        "AWS/Lambda",
        "Errors",
        "Sum",
    )
    assert dimensions(errors) == {
        "FunctionName": function_ref,
        "Resource": {"Fn::Join": ["", [function_ref, ":live"]]},
        "ExecutedVersion": deployed,
    }
    # the handler's metrics as the new version wrote them (its function_version dimension)
    loads = metric_of(alarms["DeployedVersionModelLoadFailures"][1])
    assert loads["Metric"]["MetricName"] == "ModelLoadFailures"
    assert dimensions(loads) == {"service": "image-classifier", "function_version": deployed}
    # its 5xx rate, counted only in minutes with enough requests to it
    queries = {query["Id"]: query for query in alarms["DeployedVersion5xxRate"][1]["Metrics"]}
    (expression,) = [query for query in queries.values() if "Expression" in query]
    assert expression["Expression"] == "IF(requests >= 5, errors / requests, 0)"
    assert expression["ReturnData"] is True
    for name, stat in (("errors", "Sum"), ("requests", "SampleCount")):
        metric = queries[name]["MetricStat"]
        assert (metric["Metric"]["MetricName"], metric["Stat"]) == ("ServerErrors", stat)
        assert dimensions(metric) == {"service": "image-classifier", "function_version": deployed}
    # No latency, no whole-service metric in the rollback set: a canary is judged on itself
    for name in ROLLBACK_ALARM_NAMES:
        props = alarms[name][1]
        assert "Latency" not in json.dumps(props) and "AWS/ApiGateway" not in json.dumps(props)
    # and the alarms name the new version before CodeDeploy starts shifting the alias
    (alias,) = resources(default_synth, "AWS::Lambda::Alias").values()
    assert set(alias["DependsOn"]) >= {alarms[name][0] for name in ROLLBACK_ALARM_NAMES}


def test_the_handler_writes_what_the_rollback_alarms_watch(
    default_synth: Synthesized, tmp_path: Path
) -> None:
    # Given the handler in version 7 of the function (Lambda sets AWS_LAMBDA_FUNCTION_VERSION)
    stream = io.StringIO()
    telemetry = Telemetry(service="image-classifier", stream=stream, function_version="7")
    service = InferenceService(ModelLocation(str(tmp_path), "missing-model"), telemetry=telemetry)
    # When a model load fails
    assert service.load() is False
    # Then its EMF line counts it for the service and for version 7: the paging and rollback alarms
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines() if '"_aws"' in text]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    alarms = alarms_by_name(default_synth)
    for name in ("ModelLoadFailures", "DeployedVersionModelLoadFailures"):
        assert sorted(dimensions(metric_of(alarms[name][1]))) in [sorted(d) for d in directive["Dimensions"]]
    assert (line["service"], line["function_version"], line["ModelLoadFailures"]) == (
        "image-classifier",
        "7",
        [1.0],
    )


def test_deployment_group_shifts_the_live_alias_and_rolls_back_on_the_alarms(
    default_synth: Synthesized,
) -> None:
    alarms = alarms_by_name(default_synth)
    group_id = single_id(default_synth, "AWS::CodeDeploy::DeploymentGroup")
    application_id = single_id(default_synth, "AWS::CodeDeploy::Application")
    group = resources(default_synth, "AWS::CodeDeploy::DeploymentGroup")[group_id]["Properties"]
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert group["AlarmConfiguration"] == {
        "Alarms": [{"Name": {"Ref": alarms[name][0]}} for name in ROLLBACK_ALARM_NAMES],
        "Enabled": True,
    }
    assert set(group["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
        "DEPLOYMENT_STOP_ON_REQUEST",
    }
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    # The live alias points at a published version and CloudFormation hands its updates to CodeDeploy
    (alias,) = resources(default_synth, "AWS::Lambda::Alias").values()
    (version_id,) = resources(default_synth, "AWS::Lambda::Version")
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert alias["UpdatePolicy"] == {
        "CodeDeployLambdaAliasUpdate": {
            "ApplicationName": {"Ref": application_id},
            "DeploymentGroupName": {"Ref": group_id},
        }
    }
    outputs = default_synth.inference_json["Outputs"]
    assert outputs["DeploymentGroupName"]["Value"] == {"Ref": group_id}
    assert outputs["DeploymentApplicationName"]["Value"] == {"Ref": application_id}


def test_deployment_preference_comes_from_context(synthesized: Callable[[str], Synthesized]) -> None:
    synth = synthesized("operations")
    synth.inference.has_resource_properties(
        "AWS::CodeDeploy::DeploymentGroup",
        {"DeploymentConfigName": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"},
    )


def test_every_deployment_preference_maps_to_codedeploys_predefined_config() -> None:
    expected = {
        "all_at_once": "LambdaAllAtOnce",
        "canary_10percent_5minutes": "LambdaCanary10Percent5Minutes",
        "canary_10percent_10minutes": "LambdaCanary10Percent10Minutes",
        "canary_10percent_15minutes": "LambdaCanary10Percent15Minutes",
        "canary_10percent_30minutes": "LambdaCanary10Percent30Minutes",
        "linear_10percent_every_1minute": "LambdaLinear10PercentEvery1Minute",
        "linear_10percent_every_2minutes": "LambdaLinear10PercentEvery2Minutes",
        "linear_10percent_every_3minutes": "LambdaLinear10PercentEvery3Minutes",
        "linear_10percent_every_10minutes": "LambdaLinear10PercentEvery10Minutes",
    }
    assert set(DeploymentPreference) == set(expected)
    for preference, name in expected.items():
        config = deployment_config(DeploymentPreference(preference))
        assert config.deployment_config_name == f"CodeDeployDefault.{name}"


def test_codedeploy_role_reaches_only_this_alias_and_its_rollback_alarms(default_synth: Synthesized) -> None:
    alarms = alarms_by_name(default_synth)
    group = resources(default_synth, "AWS::CodeDeploy::DeploymentGroup")
    (role_arn,) = [g["Properties"]["ServiceRoleArn"] for g in group.values()]
    role = default_synth.inference_json["Resources"][role_arn["Fn::GetAtt"][0]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "codedeploy.amazonaws.com"}}
    ]
    assert "ManagedPolicyArns" not in role  # not AWSCodeDeployRoleForLambdaLimited (every alias)
    (policy,) = role["Policies"]
    function_arn = {"Fn::GetAtt": [function_id(default_synth), "Arn"]}
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Action": ["lambda:GetAlias", "lambda:GetProvisionedConcurrencyConfig", "lambda:UpdateAlias"],
            "Effect": "Allow",
            "Resource": [function_arn, {"Fn::Join": ["", [function_arn, ":live"]]}],
            "Sid": "ShiftLiveAlias",
        },
        {
            "Action": "cloudwatch:DescribeAlarms",
            "Effect": "Allow",
            "Resource": [{"Fn::GetAtt": [alarms[name][0], "Arn"]} for name in ROLLBACK_ALARM_NAMES],
            "Sid": "ReadRollbackAlarms",
        },
    ]


def test_no_provisioned_concurrency_or_autoscaling_unless_asked(
    synthesized: Callable[[str], Synthesized],
) -> None:
    default = synthesized("default")
    default.inference.has_resource_properties(
        "AWS::Lambda::Alias", {"ProvisionedConcurrencyConfig": Match.absent()}
    )
    default.inference.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    # A fixed amount (arm64_dev asks for 2, no range) has no autoscaling either
    synthesized("arm64_dev").inference.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)


def test_provisioned_concurrency_scales_within_the_range_when_asked(
    synthesized: Callable[[str], Synthesized],
) -> None:
    synth = synthesized("operations")
    alias_id = single_id(synth, "AWS::Lambda::Alias")
    synth.inference.has_resource_properties(
        "AWS::Lambda::Alias", {"ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}}
    )
    target_id = single_id(synth, "AWS::ApplicationAutoScaling::ScalableTarget")
    target = resources(synth, "AWS::ApplicationAutoScaling::ScalableTarget")[target_id]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 8)
    assert target["ScalableDimension"] == "lambda:function:ProvisionedConcurrency"
    # function:<name>:live, the name taken from the alias (so the target follows the alias)
    assert json.dumps({"Ref": alias_id}) in json.dumps(target["ResourceId"])
    assert target["ResourceId"]["Fn::Join"][1][0] == "function:"
    assert target["ResourceId"]["Fn::Join"][1][-1] == ":live"
    synth.inference.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "ScalingTargetId": {"Ref": target_id},
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "LambdaProvisionedConcurrencyUtilization"
                },
                "TargetValue": 0.7,
            },
        },
    )


def test_dashboard_shows_traffic_latency_errors_capacity_cold_starts_and_versions(
    default_synth: Synthesized,
) -> None:
    body = dashboard_body(default_synth)
    widgets = {widget["properties"]["title"]: widget for widget in body["widgets"]}
    assert set(widgets) == {
        "Alarms",
        "Requests",
        "Latency (ms)",
        "Errors",
        "Throttles",
        "Concurrency",
        "Cold starts and init duration (ms)",
        "Model loads",
        "SnapStart restores",  # snap_start is on by default
        "Restore duration (ms), Lambda's REPORT",
        "Invocations by function version (rollouts)",
        "Model version served, by function version",
    }
    alarms = alarms_by_name(default_synth)
    assert widgets["Alarms"]["properties"]["alarms"] == [f"<{alarms[n][0]}.Arn>" for n in ALARM_NAMES]

    def metric_names(title: str) -> list[tuple[str, str, str]]:
        rows = widgets[title]["properties"]["metrics"]
        return [(row[0], row[1], row[-1].get("stat", "Average")) for row in rows if isinstance(row[0], str)]

    assert ("AWS/ApiGateway", "Count", "Sum") in metric_names("Requests")
    assert {("AWS/ApiGateway", "Latency", stat) for stat in ("p50", "p90", "p99")} <= set(
        metric_names("Latency (ms)")
    )
    assert {("AWS/ApiGateway", "5XXError", "Sum"), ("AWS/Lambda", "Errors", "Sum")} <= set(
        metric_names("Errors")
    )
    assert metric_names("Throttles") == [("AWS/Lambda", "Throttles", "Sum")]
    assert metric_names("Concurrency") == [("AWS/Lambda", "ConcurrentExecutions", "Maximum")]
    assert ("PyTorchInference", "ModelLoadFailures", "Sum") in metric_names("Model loads")
    log_group = f"<{function_log_group_id(default_synth)}>"
    cold_starts = widgets["Cold starts and init duration (ms)"]["properties"]["query"]
    assert cold_starts.startswith(f"SOURCE '{log_group}'")
    assert 'filter @type = "REPORT"' in cold_starts and "count(@initDuration)" in cold_starts
    served = widgets["Model version served, by function version"]["properties"]["query"]
    assert served.startswith(f"SOURCE '{log_group}'")  # what it finds in the handler's logs: tests/operations
    (search,) = widgets["Invocations by function version (rollouts)"]["properties"]["metrics"]
    assert "ExecutedVersion" in search[0]["expression"]
    (dashboard,) = resources(default_synth, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == default_synth.inference_stack_name


def function_log_group_id(synth: Synthesized) -> str:
    (function,) = resources(synth, "AWS::Lambda::Function").values()
    return function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]


def test_dashboard_shows_provisioned_utilization_only_with_provisioned_concurrency(
    synthesized: Callable[[str], Synthesized],
) -> None:
    for variant, expected in (("default", False), ("operations", True)):
        text = json.dumps(dashboard_body(synthesized(variant)))
        assert ("ProvisionedConcurrencyUtilization" in text) is expected
        assert ("ProvisionedConcurrencySpilloverInvocations" in text) is expected


def test_dashboard_shows_snap_start_restores_only_with_snap_start(
    synthesized: Callable[[str], Synthesized],
) -> None:
    # Given the default deployment (SnapStart on)
    default_synth = synthesized("default")
    widgets = {
        widget["properties"].get("title"): widget for widget in dashboard_body(default_synth)["widgets"]
    }
    # Then restores are counted and timed from the handler's metrics, and Lambda's own restore
    # durations are read from its REPORT lines, in the function's log group
    metrics = json.dumps(widgets["SnapStart restores"]["properties"]["metrics"])
    assert '"Restores"' in metrics and '"RestoreDuration"' in metrics
    query = widgets["Restore duration (ms), Lambda's REPORT"]["properties"]["query"]
    assert query.startswith(f"SOURCE '<{function_log_group_id(default_synth)}>'")
    assert "Restore Duration: (?<restore_ms>" in query and "avg(restore_ms)" in query
    # And without SnapStart there is nothing to restore
    text = json.dumps(dashboard_body(synthesized("operations")))
    assert "SnapStart restores" not in text and "Restore Duration" not in text


def _version_logical_id(model_version: str) -> str:
    """Build only the function construct (no whole app) and return its published version's logical ID."""
    stack = Stack(App(), "VersionHash")
    InferenceFunction(
        stack,
        "InferenceFunction",
        model_bucket=s3.Bucket(stack, "Bucket"),
        model_prefix="models",
        model_name="demo-shapes",
        model_version=model_version,
        architecture=Architecture.X86_64,
        engine=ModelEngine.TORCH,
        memory_size_mb=3008,
        timeout=Duration.seconds(20),
        ephemeral_storage_mb=512,
        max_batch_size=8,
        reserved_concurrency=None,
        provisioned_concurrency=0,
        snap_start=True,
        log_retention=logs.RetentionDays.ONE_MONTH,
        metrics_namespace="PyTorchInference",
        cors_allow_origin=None,
    )
    (logical_id,) = Template.from_stack(stack).find_resources("AWS::Lambda::Version")
    return logical_id


def test_a_new_pinned_model_version_publishes_a_new_function_version() -> None:
    # The alias update (and so CodeDeploy's traffic shift and rollback) happens only when the
    # version resource changes: the pinned model must be part of what CDK hashes into its ID.
    first = _version_logical_id("2024-06-01")
    assert _version_logical_id("2024-06-01") == first  # deterministic: no deploy without a change
    assert _version_logical_id("2024-07-01") != first


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"provisioned_concurrency": "0", "provisioned_concurrency_max": "5"},
            "'provisioned_concurrency_max' has invalid value 5: allowed is 0 (no autoscaling) or above "
            "provisioned_concurrency (0)",
        ),
        (
            {"provisioned_concurrency": "4", "provisioned_concurrency_max": "4"},
            "'provisioned_concurrency_max' has invalid value 4: allowed is 0 (no autoscaling) or above "
            "provisioned_concurrency (4)",
        ),
        (
            {"reserved_concurrency": "6", "provisioned_concurrency": "2", "provisioned_concurrency_max": "8"},
            "'provisioned_concurrency_max' has invalid value 8: allowed is at most reserved_concurrency (6)",
        ),
    ],
)
def test_the_autoscaling_range_must_make_sense(
    cdk_context: dict[str, object], overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_context({**cdk_context, **overrides})
    assert message in str(raised.value)


def test_the_autoscaling_range_parses_when_it_makes_sense(cdk_context: dict[str, object]) -> None:
    config = parse_context(
        {
            **cdk_context,
            "reserved_concurrency": "8",
            "provisioned_concurrency": "2",
            "provisioned_concurrency_max": 8,
            "snap_start": False,  # Lambda takes provisioned concurrency or SnapStart, not both
        }
    )
    assert (config.provisioned_concurrency, config.provisioned_concurrency_max) == (2, 8)


def test_operations_defaults_are_the_declared_ones(cdk_context: dict[str, object]) -> None:
    config = parse_context(cdk_context)
    assert config.deployment_preference == "canary_10percent_5minutes"
    assert config.alarm_email is None
    assert config.provisioned_concurrency_max == 0
    assert (config.alarm_5xx_rate_percent, config.alarm_p99_latency_ms) == (1, 5000)
