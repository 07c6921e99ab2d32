"""The one way this app builds a Lambda function: from the image in lambda_src/, serving one model.

The API function and the batch function (and any later function from the same image) are
ContainerFunctions: the image asset, architecture, memory, timeout, log group, tracing, the
model's environment and the role are set here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_src.artifact import model_prefix as artifact_model_prefix
from lambda_src.artifact import s3_store_uri
from lambda_src.contract import (
    ENV_MODEL_ENGINE,
    ENV_MODEL_NAME,
    ENV_MODEL_STORE,
    ENV_MODEL_VERSION,
    ModelEngine,
)
from stacks.config import Architecture
from stacks.function_policies import (
    acknowledge_function_role,
    own_logs_statement,
    read_model_statement,
    traces_statement,
)

LAMBDA_SOURCE_DIR = Path(__file__).resolve().parent.parent / "lambda_src"
ENGINE_BUILD_ARG = "ENGINE"  # the Dockerfile's build argument: which engine's packages the image holds


def lambda_architecture(architecture: Architecture) -> lambda_.Architecture:
    """The context choice as CDK's Architecture (the choice's member names are CDK's)."""
    chosen: lambda_.Architecture = getattr(lambda_.Architecture, architecture.name)
    return chosen


def image_platform(architecture: Architecture) -> ecr_assets.Platform:
    """The image's build platform, the function's own: a mismatch fails at start ("exec format error")."""
    return ecr_assets.Platform.custom(lambda_architecture(architecture).docker_platform)


def model_store_uri(model_bucket: s3.IBucket, model_prefix: str) -> str:
    """The model store as the image reads it (MODEL_STORE) and `publish` writes to it."""
    return s3_store_uri(model_bucket.bucket_name, model_prefix)


class ContainerFunction(Construct):
    """A DockerImageFunction from lambda_src/ that reads one model and writes only its own logs.

    Its role holds the statements every function of the image needs (read the model, write its
    own log group, send traces) plus the caller's `statements`; `command` picks the image's entry
    point (the API handler by default); `engine` picks the image's serving engine (its build
    argument) and sets MODEL_ENGINE to it; `snap_start` turns SnapStart on for its published
    versions. Exposes `function`, `role`, `log_group` and `model_store_uri`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        role_description: str,
        policy_name: str,
        model_bucket: s3.IBucket,
        model_prefix: str,
        model_name: str,
        model_version: str,
        architecture: Architecture,
        engine: ModelEngine,
        memory_size_mb: int,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        environment: Mapping[str, str] | None = None,
        statements: Sequence[iam.PolicyStatement] = (),
        command: Sequence[str] | None = None,
        ephemeral_storage_mb: int | None = None,
        reserved_concurrency: int | None = None,
        snap_start: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model_store_uri = model_store_uri(model_bucket, model_prefix)
        self.log_group = self._build_log_group(log_retention)
        model_objects = model_bucket.arn_for_objects(f"{artifact_model_prefix(model_prefix, model_name)}/*")
        self.role = self._build_role(
            description=role_description,
            policy_name=policy_name,
            statements=[read_model_statement(model_objects), *statements],
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description=description,
            code=self._build_code(architecture, engine, command),
            architecture=lambda_architecture(architecture),
            memory_size=memory_size_mb,
            timeout=timeout,
            ephemeral_storage_size=(
                Size.mebibytes(ephemeral_storage_mb) if ephemeral_storage_mb is not None else None
            ),
            # The role's policy is complete, so the function gets it as an immutable reference: CDK
            # then adds no grants of its own (it would repeat the X-Ray and log statements) and no
            # DependsOn beside the GetAtt on the role's ARN (cfn-lint W3005).
            role=iam.Role.from_role_arn(self, "ImmutableRole", self.role.role_arn, mutable=False),
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            environment={
                ENV_MODEL_STORE: self.model_store_uri,
                ENV_MODEL_NAME: model_name,
                ENV_MODEL_VERSION: model_version,
                ENV_MODEL_ENGINE: engine.value,
                **(environment or {}),
            },
            # Each published version is initialised once, model loaded, and snapshotted; its
            # environments are restored from that snapshot (lambda_src/snapstart.py: the hooks).
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
        )

    def _build_log_group(self, retention: logs.RetentionDays) -> logs.LogGroup:
        # Logs are operational records, not state: they go with the stack.
        return logs.LogGroup(self, "LogGroup", retention=retention, removal_policy=RemovalPolicy.DESTROY)

    def _build_role(
        self, *, description: str, policy_name: str, statements: Sequence[iam.PolicyStatement]
    ) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
            inline_policies={
                policy_name: iam.PolicyDocument(
                    statements=[*statements, own_logs_statement(self.log_group), traces_statement()]
                )
            },
        )
        acknowledge_function_role(role)
        return role

    def _build_code(
        self, architecture: Architecture, engine: ModelEngine, command: Sequence[str] | None
    ) -> lambda_.DockerImageCode:
        # Every function gets the same asset (directory, platform, engine), so the image is built
        # once; `command` only changes the entry point it starts.
        return lambda_.DockerImageCode.from_image_asset(
            str(LAMBDA_SOURCE_DIR),
            platform=image_platform(architecture),
            build_args={ENGINE_BUILD_ARG: engine.value},
            cmd=list(command) if command is not None else None,
        )
