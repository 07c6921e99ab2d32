"""The API's function: the image's default entry point, behind a `live` alias that callers invoke."""

from __future__ import annotations

from aws_cdk import Annotations, Duration
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_src.contract import (
    DEPLOYED_SERVICE_NAME,
    ENV_CORS_ALLOW_ORIGIN,
    ENV_MAX_BATCH_SIZE,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    ModelEngine,
)
from stacks.config import Architecture
from stacks.container_function import ContainerFunction

LIVE_ALIAS_NAME = "live"
# The id of CDK's warning on a SnapStart function (aws-cdk-lib aws_lambda).
SNAP_START_REQUIRES_PUBLISH = "@aws-cdk/aws-lambda:snapStartRequirePublish"


class InferenceFunction(ContainerFunction):
    """The function that serves the API, with the handler's settings and a `live` alias.

    Exposes, beside ContainerFunction's attributes, `live_alias` (what callers invoke; it holds
    provisioned concurrency, or with SnapStart restores from the snapshot of the version it names).
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
        engine: ModelEngine,
        memory_size_mb: int,
        timeout: Duration,
        ephemeral_storage_mb: int,
        max_batch_size: int,
        reserved_concurrency: int | None,
        provisioned_concurrency: int,
        snap_start: bool,
        log_retention: logs.RetentionDays,
        metrics_namespace: str,
        cors_allow_origin: str | None,
    ) -> None:
        environment = {
            ENV_MAX_BATCH_SIZE: str(max_batch_size),
            ENV_POWERTOOLS_SERVICE_NAME: DEPLOYED_SERVICE_NAME,
            ENV_POWERTOOLS_METRICS_NAMESPACE: metrics_namespace,
        }
        if cors_allow_origin:
            # With Lambda proxy integration the function's own responses must carry the CORS header.
            environment[ENV_CORS_ALLOW_ORIGIN] = cors_allow_origin
        super().__init__(
            scope,
            construct_id,
            description="PyTorch image classifier: loads the model once per environment, serves predictions",
            role_description="Inference function: read one model's artifacts, write its own logs and traces",
            policy_name="InferenceFunction",
            model_bucket=model_bucket,
            model_prefix=model_prefix,
            model_name=model_name,
            model_version=model_version,
            architecture=architecture,
            engine=engine,
            memory_size_mb=memory_size_mb,
            timeout=timeout,
            log_retention=log_retention,
            environment=environment,
            ephemeral_storage_mb=ephemeral_storage_mb,
            reserved_concurrency=reserved_concurrency,
            snap_start=snap_start,
        )
        self.live_alias = self.function.add_alias(
            LIVE_ALIAS_NAME,
            provisioned_concurrent_executions=provisioned_concurrency or None,
        )
        if snap_start:
            # CDK warns that SnapStart needs published versions; `live` always names one
            # (function.current_version), so every snapshot belongs to a published version.
            Annotations.of(self.function).acknowledge_warning(
                SNAP_START_REQUIRES_PUBLISH,
                "the live alias points at function.current_version, a published version",
            )
