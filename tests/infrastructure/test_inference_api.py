"""The REST API: routes, auth per mode, binary media types, validation, throttling, logs, outputs."""

from __future__ import annotations

import json
from collections.abc import Callable

import jsonschema
import pytest
from aws_cdk.assertions import Capture, Match

from lambda_src.contract import BATCH_STACK_OUTPUTS, AuthMode, StackOutput
from tests.infrastructure.conftest import Synthesized

# A synthesized variant per auth mode (tests/infrastructure/conftest.py).
VARIANT_OF_AUTH_MODE = {AuthMode.IAM: "default", AuthMode.API_KEY: "api_key", AuthMode.NONE: "open_with_cors"}


def methods(synth: Synthesized) -> dict[tuple[str, str], dict]:
    """(path, HTTP method) -> Method properties, with the path rebuilt from the API resources."""
    resources = synth.inference.find_resources("AWS::ApiGateway::Resource")
    paths = {
        logical_id: "/" + resource["Properties"]["PathPart"] for logical_id, resource in resources.items()
    }
    found = {}
    for method in synth.inference.find_resources("AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        resource_id = properties["ResourceId"]
        path = paths[resource_id["Ref"]] if "Ref" in resource_id else "/"
        found[(path, properties["HttpMethod"])] = properties
    return found


def alias_id(synth: Synthesized) -> str:
    (logical_id,) = synth.inference.find_resources("AWS::Lambda::Alias", {"Properties": {"Name": "live"}})
    return logical_id


def stage(synth: Synthesized) -> dict:
    stages = synth.inference.find_resources("AWS::ApiGateway::Stage")
    assert len(stages) == 1
    return next(iter(stages.values()))["Properties"]


def test_regional_rest_api_with_image_binary_media_types(default_synth: Synthesized) -> None:
    default_synth.inference.resource_count_is("AWS::ApiGateway::RestApi", 1)
    default_synth.inference.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            # exactly these: a wildcard such as */* would base64-encode JSON bodies too
            "BinaryMediaTypes": ["image/jpeg", "image/png", "image/webp"],
        },
    )


def test_only_post_predict_and_get_health_exist_and_reach_the_live_alias(default_synth: Synthesized) -> None:
    found = methods(default_synth)
    assert set(found) == {("/predict", "POST"), ("/health", "GET")}
    for properties in found.values():
        integration = properties["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["IntegrationHttpMethod"] == "POST"
        assert {"Ref": alias_id(default_synth)} in integration["Uri"]["Fn::Join"][1]
    assert not any("{proxy+}" in path for path, _ in found)


def test_predict_validates_json_bodies_and_leaves_the_batch_limit_to_the_function(
    default_synth: Synthesized,
) -> None:
    predict = methods(default_synth)[("/predict", "POST")]
    validators = default_synth.inference.find_resources("AWS::ApiGateway::RequestValidator")
    assert predict["RequestValidatorId"]["Ref"] in validators
    validator = validators[predict["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestBody"] is True
    assert validator["ValidateRequestParameters"] is True
    assert predict["RequestParameters"] == {"method.request.querystring.top_k": False}
    model_id = predict["RequestModels"]["application/json"]["Ref"]
    model = default_synth.inference_json["Resources"][model_id]["Properties"]
    assert model["ContentType"] == "application/json"
    single, batch = model["Schema"]["oneOf"]
    assert single["required"] == ["image"]
    assert single["properties"]["image"] == {"type": "string", "minLength": 1}
    assert batch["required"] == ["images"]
    assert batch["properties"]["images"]["minItems"] == 1
    # A batch over max_batch_size passes the request model: the function answers it, with its 413
    too_many = {"images": ["aGk="] * (default_synth.config.max_batch_size + 1)}
    jsonschema.Draft4Validator(model["Schema"]).validate(too_many)


def test_stage_is_throttled_logged_and_traced(default_synth: Synthesized) -> None:
    properties = stage(default_synth)
    assert properties["StageName"] == "v1"
    assert properties["TracingEnabled"] is True
    assert properties["MethodSettings"] == [
        {
            "DataTraceEnabled": False,
            "HttpMethod": "*",
            "LoggingLevel": "ERROR",
            "MetricsEnabled": True,
            "ResourcePath": "/*",
            "ThrottlingBurstLimit": 20,
            "ThrottlingRateLimit": 10,
        }
    ]
    access_log = properties["AccessLogSetting"]
    log_format = json.loads(access_log["Format"])
    assert {"requestId", "ip", "caller", "status", "integrationLatency", "errorMessage"} <= set(log_format)
    destination = json.dumps(access_log["DestinationArn"])
    log_groups = default_synth.inference.find_resources("AWS::Logs::LogGroup")
    (access_log_group,) = (logical_id for logical_id in log_groups if logical_id in destination)
    assert log_groups[access_log_group]["Properties"]["RetentionInDays"] == 30


def test_execution_log_level_follows_the_config(synthesized: Callable[[str], Synthesized]) -> None:
    assert stage(synthesized("arm64_dev"))["MethodSettings"][0]["LoggingLevel"] == "INFO"


def test_iam_auth_by_default(default_synth: Synthesized) -> None:
    for properties in methods(default_synth).values():
        assert properties["AuthorizationType"] == "AWS_IAM"
        assert properties["ApiKeyRequired"] is False
    default_synth.inference.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    default_synth.inference.resource_count_is("AWS::ApiGateway::ApiKey", 0)


def test_api_key_mode_requires_a_key_of_a_usage_plan_with_rate_burst_and_quota(
    synthesized: Callable[[str], Synthesized],
) -> None:
    synth = synthesized("api_key")
    for properties in methods(synth).values():
        assert properties["AuthorizationType"] == "NONE"
        assert properties["ApiKeyRequired"] is True
    stage_ref = Capture()
    synth.inference.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 10, "BurstLimit": 20},
            "Quota": {"Limit": 5000, "Period": "DAY"},
            "ApiStages": [{"ApiId": Match.any_value(), "Stage": {"Ref": stage_ref}}],
        },
    )
    assert synth.inference_json["Resources"][stage_ref.as_string()]["Type"] == "AWS::ApiGateway::Stage"
    synth.inference.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    synth.inference.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    synth.inference.has_output("ApiKeyId", {"Value": Match.any_value()})


def test_none_mode_is_open_only_because_it_was_asked_for(synthesized: Callable[[str], Synthesized]) -> None:
    synth = synthesized("open_with_cors")
    assert synth.config.auth_mode == "none"
    for properties in methods(synth).values():
        assert properties["AuthorizationType"] == "NONE"
        assert properties["ApiKeyRequired"] is False
    synth.inference.resource_count_is("AWS::ApiGateway::UsagePlan", 0)


def test_cors_adds_preflight_for_the_configured_origin_only_when_asked(
    synthesized: Callable[[str], Synthesized], default_synth: Synthesized
) -> None:
    assert not any(http_method == "OPTIONS" for _, http_method in methods(default_synth))
    found = methods(synthesized("open_with_cors"))
    assert {("/predict", "OPTIONS"), ("/health", "OPTIONS")} <= set(found)
    preflight = found[("/predict", "OPTIONS")]["Integration"]["IntegrationResponses"][0]
    assert preflight["ResponseParameters"]["method.response.header.Access-Control-Allow-Origin"] == (
        "'https://app.example.com'"
    )


def test_api_gateway_errors_use_the_api_error_format(default_synth: Synthesized) -> None:
    responses = default_synth.inference.find_resources("AWS::ApiGateway::GatewayResponse")
    assert {response["Properties"]["ResponseType"] for response in responses.values()} == {
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    }
    for response in responses.values():
        template = response["Properties"]["ResponseTemplates"]["application/json"]
        # The VTL variables stand in for a code and an already-quoted message: the rest is JSON.
        rendered = template.replace("$context.error.responseType", "ACCESS_DENIED").replace(
            "$context.error.messageString", '"Forbidden"'
        )
        assert json.loads(rendered) == {"error": {"code": "ACCESS_DENIED", "message": "Forbidden"}}


@pytest.mark.parametrize(
    "output",
    [
        "EndpointUrl",
        "ModelBucketName",
        "ModelStoreUri",
        "ModelLocation",
        "ModelName",
        "ModelVersion",
        "AuthMode",
    ],
)
def test_outputs_for_callers_and_model_authors(default_synth: Synthesized, output: str) -> None:
    outputs = default_synth.inference_json["Outputs"]
    assert output in outputs
    assert outputs[output]["Description"]


@pytest.mark.parametrize("variant", ["default", "api_key", "operations", "batch"])
def test_every_output_is_named_in_the_contract(
    synthesized: Callable[[str], Synthesized], variant: str
) -> None:
    outputs = synthesized(variant).inference_json["Outputs"]

    assert set(outputs) <= set(StackOutput)


def test_endpoint_url_is_the_stage_url_and_model_location_is_the_model_prefix(
    default_synth: Synthesized,
) -> None:
    outputs = default_synth.inference_json["Outputs"]
    endpoint = outputs["EndpointUrl"]["Value"]["Fn::Join"][1]
    assert endpoint[0] == "https://" and endpoint[-1] == "/"
    location = outputs["ModelLocation"]["Value"]["Fn::Join"][1]
    assert location[0] == "s3://" and location[-1] == "/models/demo-shapes/"
    assert outputs["ModelName"]["Value"] == "demo-shapes"
    assert outputs["AuthMode"]["Value"] == "iam"
    assert "ApiKeyId" not in outputs


@pytest.mark.parametrize("auth_mode", list(AuthMode))
def test_every_output_the_client_and_smoke_test_read_is_emitted(
    synthesized: Callable[[str], Synthesized], auth_mode: AuthMode
) -> None:
    # Given the inference stack synthesized with this auth mode
    synth = synthesized(VARIANT_OF_AUTH_MODE[auth_mode])
    assert synth.config.auth_mode == auth_mode
    outputs = synth.inference_json["Outputs"]
    # Then it emits every StackOutput, ApiKeyId exactly when callers need a key (and the batch
    # outputs only with batch inference, test_batch_inference.py; AlarmTopicArn only with an
    # alarm e-mail address, test_operations.py)
    expected = {
        output
        for output in StackOutput
        if (output != StackOutput.API_KEY_ID or auth_mode == AuthMode.API_KEY)
        and output not in BATCH_STACK_OUTPUTS
        and output != StackOutput.ALARM_TOPIC_ARN
    }
    assert expected == set(StackOutput) & set(outputs)
    assert outputs[StackOutput.AUTH_MODE]["Value"] == auth_mode.value
