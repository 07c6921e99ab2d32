"""The REST API in front of the inference function: two routes, validated, throttled, logged."""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from lambda_src.contract import HEALTH_PATH, IMAGE_MEDIA_TYPES, JSON_MEDIA_TYPE, PREDICT_PATH, AuthMode
from stacks.config import ExecutionLogLevel

STAGE_NAME = "v1"
# API Gateway's own errors (no route, denied, throttled, invalid body) in the API's error format.
ERROR_RESPONSE_TEMPLATE = (
    '{"error": {"code": "$context.error.responseType", "message": $context.error.messageString}}'
)
CORS_ALLOW_HEADERS = ["Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Api-Key"]


class InferenceApi(Construct):
    """A Regional RestApi: POST /predict and GET /health to the function, nothing else.

    Exposes `rest_api`, `predict_method`, `health_method` and, with auth_mode api_key,
    `api_key` and `usage_plan`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        auth_mode: AuthMode,
        throttle_rate_limit: float,
        throttle_burst_limit: int,
        api_key_quota_per_day: int,
        cors_allow_origin: str | None,
        log_retention: logs.RetentionDays,
        execution_log_level: ExecutionLogLevel,
        create_cloudwatch_role: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.auth_mode = auth_mode
        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.rest_api = self._build_rest_api(
            auth_mode=auth_mode,
            throttle_rate_limit=throttle_rate_limit,
            throttle_burst_limit=throttle_burst_limit,
            cors_allow_origin=cors_allow_origin,
            execution_log_level=execution_log_level,
            create_cloudwatch_role=create_cloudwatch_role,
        )
        # The stack has its own, described EndpointUrl output.
        self.rest_api.node.try_remove_child("Endpoint")
        self._build_error_responses(cors_allow_origin)
        integration = apigateway.LambdaIntegration(handler, allow_test_invoke=False)
        self.predict_method = self._build_predict_method(integration)
        self.health_method = self.rest_api.root.add_resource(HEALTH_PATH.lstrip("/")).add_method(
            "GET", integration
        )
        self.api_key: apigateway.IApiKey | None = None
        self.usage_plan: apigateway.UsagePlan | None = None
        if auth_mode == AuthMode.API_KEY:
            self._build_usage_plan(throttle_rate_limit, throttle_burst_limit, api_key_quota_per_day)
        self._acknowledge_findings(create_cloudwatch_role)

    def _build_rest_api(
        self,
        *,
        auth_mode: AuthMode,
        throttle_rate_limit: float,
        throttle_burst_limit: int,
        cors_allow_origin: str | None,
        execution_log_level: ExecutionLogLevel,
        create_cloudwatch_role: bool,
    ) -> apigateway.RestApi:
        return apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{Stack.of(self).stack_name}-api",
            description="PyTorch image classifier: POST /predict, GET /health",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Raw image bodies: API Gateway base64-encodes exactly these for the function; JSON stays text.
            binary_media_types=list(IMAGE_MEDIA_TYPES),
            # API Gateway writes execution and access logs through one account-wide role; an
            # account that already has it set can turn this off.
            cloud_watch_role=create_cloudwatch_role,
            default_method_options=apigateway.MethodOptions(
                # API keys are not an authorization type: the key is required on top of none.
                authorization_type=(
                    apigateway.AuthorizationType.IAM
                    if auth_mode == AuthMode.IAM
                    else apigateway.AuthorizationType.NONE
                ),
                api_key_required=auth_mode == AuthMode.API_KEY,
            ),
            default_cors_preflight_options=_cors_options(cors_allow_origin),
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=throttle_rate_limit,
                throttling_burst_limit=throttle_burst_limit,
                logging_level=apigateway.MethodLoggingLevel[execution_log_level.name],
                # Request bodies are images (and maybe personal data): never copy them into logs.
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS)),
            ),
        )

    def _build_error_responses(self, cors_allow_origin: str | None) -> None:
        headers = {"Access-Control-Allow-Origin": f"'{cors_allow_origin}'"} if cors_allow_origin else None
        for construct_id, response_type in (
            ("Default4xx", apigateway.ResponseType.DEFAULT_4_XX),
            ("Default5xx", apigateway.ResponseType.DEFAULT_5_XX),
        ):
            self.rest_api.add_gateway_response(
                construct_id,
                type=response_type,
                response_headers=headers,
                templates={JSON_MEDIA_TYPE: ERROR_RESPONSE_TEMPLATE},
            )

    def _build_predict_method(self, integration: apigateway.Integration) -> apigateway.Method:
        validator = self.rest_api.add_request_validator(
            "RequestValidator", validate_request_body=True, validate_request_parameters=True
        )
        request_model = self.rest_api.add_model(
            "PredictRequest",
            content_type=JSON_MEDIA_TYPE,
            model_name="PredictRequest",
            description="One base64 image, or a batch of them",
            schema=_predict_request_schema(),
        )
        return self.rest_api.root.add_resource(PREDICT_PATH.lstrip("/")).add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={JSON_MEDIA_TYPE: request_model},
            request_parameters={"method.request.querystring.top_k": False},
        )

    def _build_usage_plan(
        self, throttle_rate_limit: float, throttle_burst_limit: int, api_key_quota_per_day: int
    ) -> None:
        self.api_key = self.rest_api.add_api_key("ApiKey", description="Key for the image classifier API")
        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            description="Rate, burst and daily quota for API key callers",
            throttle=apigateway.ThrottleSettings(
                rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit
            ),
            quota=apigateway.QuotaSettings(limit=api_key_quota_per_day, period=apigateway.Period.DAY),
            api_stages=[
                apigateway.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)
            ],
        )
        self.usage_plan.add_api_key(self.api_key)

    def _acknowledge_findings(self, create_cloudwatch_role: bool) -> None:
        Validations.of(self.rest_api.deployment_stage).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="No WAF web ACL by default: every route needs IAM or API key auth and the stage "
                "is throttled; web ACLs are usually managed per account (Firewall Manager) and cost "
                "per request. Associate one with the stage if your account requires it.",
            )
        )
        if create_cloudwatch_role:
            Validations.of(self.rest_api).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    reason="API Gateway's account-wide logging role: the service writes every API's "
                    "execution logs through it, so it cannot be scoped to this API; AWS maintains it.",
                )
            )
        for method in self._all_methods():
            self._acknowledge_method_auth(method)

    def _all_methods(self) -> list[apigateway.Method]:
        return [child for child in self.rest_api.node.find_all() if isinstance(child, apigateway.Method)]

    def _acknowledge_method_auth(self, method: apigateway.Method) -> None:
        acknowledged: tuple[str, ...]
        if method.http_method == "OPTIONS":
            reason = "CORS preflight requests carry no credentials by design (Fetch standard)."
            acknowledged = ("AwsSolutions-APIG4", "AwsSolutions-COG4")
        elif self.auth_mode == AuthMode.IAM:
            reason = "Callers are AWS principals signing with SigV4 (IAM auth); there is no user pool."
            acknowledged = ("AwsSolutions-COG4",)
        elif self.auth_mode == AuthMode.API_KEY:
            reason = (
                "auth_mode=api_key chosen in context: API Gateway rejects calls without a key of the "
                "usage plan (rate, burst, daily quota). Use auth_mode=iam for per-principal auth."
            )
            acknowledged = ("AwsSolutions-APIG4", "AwsSolutions-COG4")
        else:
            reason = "auth_mode=none chosen explicitly in context: an open endpoint, throttled per stage."
            acknowledged = ("AwsSolutions-APIG4", "AwsSolutions-COG4")
        Validations.of(method).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule in acknowledged))


_ACCESS_LOG_FIELDS = {
    "requestId": apigateway.AccessLogField.context_request_id(),
    "ip": apigateway.AccessLogField.context_identity_source_ip(),
    "caller": apigateway.AccessLogField.context_identity_caller(),
    "user": apigateway.AccessLogField.context_identity_user(),
    "apiKeyId": apigateway.AccessLogField.context_identity_api_key_id(),
    "requestTime": apigateway.AccessLogField.context_request_time(),
    "httpMethod": apigateway.AccessLogField.context_http_method(),
    "resourcePath": apigateway.AccessLogField.context_resource_path(),
    "status": apigateway.AccessLogField.context_status(),
    "protocol": apigateway.AccessLogField.context_protocol(),
    "responseLength": apigateway.AccessLogField.context_response_length(),
    "responseLatency": apigateway.AccessLogField.context_response_latency(),
    "integrationLatency": apigateway.AccessLogField.context_integration_latency(),
    "errorResponseType": apigateway.AccessLogField.context_error_response_type(),
    "errorMessage": apigateway.AccessLogField.context_error_message(),
}


def _cors_options(allow_origin: str | None) -> apigateway.CorsOptions | None:
    if allow_origin is None:
        return None
    return apigateway.CorsOptions(
        allow_origins=[allow_origin],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS,
    )


def _predict_request_schema() -> apigateway.JsonSchema:
    """JSON bodies: {"image": "<base64>"} or {"images": ["<base64>", ...]}.

    The number of images is left to the function (MAX_BATCH_SIZE), so a batch that is too
    large gets one answer on every path: the function's 413, not the request model's 400.
    """
    image = apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING, min_length=1)
    return apigateway.JsonSchema(
        schema=apigateway.JsonSchemaVersion.DRAFT4,
        title="PredictRequest",
        type=apigateway.JsonSchemaType.OBJECT,
        one_of=[
            apigateway.JsonSchema(
                type=apigateway.JsonSchemaType.OBJECT, required=["image"], properties={"image": image}
            ),
            apigateway.JsonSchema(
                type=apigateway.JsonSchemaType.OBJECT,
                required=["images"],
                properties={
                    "images": apigateway.JsonSchema(
                        type=apigateway.JsonSchemaType.ARRAY,
                        items=image,
                        min_items=1,
                    )
                },
            ),
        ],
    )
