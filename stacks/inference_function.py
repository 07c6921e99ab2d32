"""The inference function: container image from lambda_src/, its own role and its own log group."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Size, Validations
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_src.artifact import model_prefix as artifact_model_prefix
from lambda_src.contract import (
    DEPLOYED_SERVICE_NAME,
    ENV_CORS_ALLOW_ORIGIN,
    ENV_MAX_BATCH_SIZE,
    ENV_MODEL_NAME,
    ENV_MODEL_STORE,
    ENV_MODEL_VERSION,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
)
from stacks.config import Architecture
from stacks.nag import acknowledge_statement_wildcards

LAMBDA_SOURCE_DIR = Path(__file__).resolve().parent.parent / "lambda_src"
LIVE_ALIAS_NAME = "live"


def lambda_architecture(architecture: Architecture) -> lambda_.Architecture:
    """The context choice as CDK's Architecture (the choice's member names are CDK's)."""
    chosen: lambda_.Architecture = getattr(lambda_.Architecture, architecture.name)
    return chosen


def image_platform(architecture: Architecture) -> ecr_assets.Platform:
    """The image's build platform, the function's own: a mismatch fails at start ("exec format error")."""
    return ecr_assets.Platform.custom(lambda_architecture(architecture).docker_platform)


class InferenceFunction(Construct):
    """A DockerImageFunction that reads one model's artifacts and writes only its own logs.

    Exposes `function`, `live_alias` (what callers invoke; holds provisioned concurrency),
    `role` and `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model_bucket: s3.IBucket,
        model_prefix: str,
        model_name: str,
        model_version: str,
        architecture: Architecture,
        memory_size_mb: int,
        timeout: Duration,
        ephemeral_storage_mb: int,
        max_batch_size: int,
        reserved_concurrency: int | None,
        provisioned_concurrency: int,
        log_retention: logs.RetentionDays,
        metrics_namespace: str,
        cors_allow_origin: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = self._build_log_group(log_retention)
        self.role = self._build_role(model_bucket, artifact_model_prefix(model_prefix, model_name))
        environment = {
            ENV_MODEL_STORE: f"s3://{model_bucket.bucket_name}/{model_prefix}",
            ENV_MODEL_NAME: model_name,
            ENV_MODEL_VERSION: model_version,
            ENV_MAX_BATCH_SIZE: str(max_batch_size),
            ENV_POWERTOOLS_SERVICE_NAME: DEPLOYED_SERVICE_NAME,
            ENV_POWERTOOLS_METRICS_NAMESPACE: metrics_namespace,
        }
        if cors_allow_origin:
            # With Lambda proxy integration the function's own responses must carry the CORS header.
            environment[ENV_CORS_ALLOW_ORIGIN] = cors_allow_origin
        self.function = self._build_function(
            architecture=architecture,
            memory_size_mb=memory_size_mb,
            timeout=timeout,
            ephemeral_storage_mb=ephemeral_storage_mb,
            reserved_concurrency=reserved_concurrency,
            environment=environment,
        )
        self.live_alias = self.function.add_alias(
            LIVE_ALIAS_NAME,
            provisioned_concurrent_executions=provisioned_concurrency or None,
        )

    def _build_log_group(self, retention: logs.RetentionDays) -> logs.LogGroup:
        # Logs are operational records, not state: they go with the stack.
        return logs.LogGroup(self, "LogGroup", retention=retention, removal_policy=RemovalPolicy.DESTROY)

    def _build_role(self, model_bucket: s3.IBucket, model_key_prefix: str) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Inference function: read one model's artifacts, write its own logs and traces",
            inline_policies={
                "InferenceFunction": iam.PolicyDocument(
                    statements=[
                        read_model_statement(model_bucket.arn_for_objects(f"{model_key_prefix}/*")),
                        own_logs_statement(self.log_group),
                        traces_statement(),
                    ]
                )
            },
        )
        acknowledge_function_role(role)
        return role

    def _build_function(
        self,
        *,
        architecture: Architecture,
        memory_size_mb: int,
        timeout: Duration,
        ephemeral_storage_mb: int,
        reserved_concurrency: int | None,
        environment: dict[str, str],
    ) -> lambda_.DockerImageFunction:
        return lambda_.DockerImageFunction(
            self,
            "Function",
            description="PyTorch image classifier: loads the model once per environment, serves predictions",
            code=lambda_.DockerImageCode.from_image_asset(
                str(LAMBDA_SOURCE_DIR), platform=image_platform(architecture)
            ),
            architecture=lambda_architecture(architecture),
            memory_size=memory_size_mb,
            timeout=timeout,
            ephemeral_storage_size=Size.mebibytes(ephemeral_storage_mb),
            # The policy above is complete, so the function gets the role as an immutable reference:
            # CDK then adds no grants of its own (it would repeat the X-Ray and log statements) and
            # no DependsOn beside the GetAtt on the role's ARN (cfn-lint W3005).
            role=iam.Role.from_role_arn(self, "ImmutableRole", self.role.role_arn, mutable=False),
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            environment=environment,
        )


# The statements every function role of this app holds (the API's and the batch function's),
# and the findings they raise, acknowledged once.
def read_model_statement(model_objects: str) -> iam.PolicyStatement:
    """Read one model's objects: exact keys only (manifest, weights, LATEST), no s3:ListBucket."""
    return iam.PolicyStatement(sid="ReadModelArtifacts", actions=["s3:GetObject"], resources=[model_objects])


def own_logs_statement(log_group: logs.ILogGroup) -> iam.PolicyStatement:
    """Write to the function's own log group only."""
    return iam.PolicyStatement(
        sid="WriteOwnLogs",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[log_group.log_group_arn],
    )


XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")


def traces_statement() -> iam.PolicyStatement:
    """Send X-Ray traces (X-Ray has no resource-level permissions: Resource '*')."""
    return iam.PolicyStatement(sid="WriteTraces", actions=list(XRAY_ACTIONS), resources=["*"])


def acknowledge_function_role(role: iam.Role) -> None:
    """Acknowledge the two wildcards of the statements above, each with its reason."""
    Validations.of(role).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level "
            "permissions (Service Authorization Reference), so X-Ray tracing needs Resource '*'.",
        ),
    )
    acknowledge_statement_wildcards(
        role,
        statement_sid="ReadModelArtifacts",
        reason="Read access is limited to the objects under this one model's prefix; the wildcard "
        "covers its versions, whose names are not known at deploy time.",
    )
