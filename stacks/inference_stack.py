"""The stateless half: function and API. Safe to destroy and redeploy; the model stays in the bucket."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_src.artifact import model_prefix as artifact_model_prefix
from lambda_src.contract import DEPLOYED_SERVICE_NAME, StackOutput
from stacks.batch_function import BatchFunction
from stacks.batch_locations import BatchLocations
from stacks.batch_state_machine import BatchStateMachine
from stacks.capacity import add_provisioned_concurrency_autoscaling
from stacks.config import LOG_RETENTION_DAYS, DeploymentConfig
from stacks.inference_api import STAGE_NAME, InferenceApi
from stacks.inference_function import InferenceFunction
from stacks.logical_ids import keep_logical_id
from stacks.monitoring import InferenceAlarms, InferenceDashboard, InferenceMetrics
from stacks.rollout import SafeRollout


class InferenceStack(Stack):
    """Function and REST API serving the model in `model_bucket`, with alarms, dashboard and safe rollout."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, model_bucket: s3.IBucket
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Inference: container-image Lambda function and REST API for a PyTorch classifier",
        )
        log_retention = logs.RetentionDays[LOG_RETENTION_DAYS[config.log_retention_days]]
        self.inference_function = InferenceFunction(
            self,
            "InferenceFunction",
            model_bucket=model_bucket,
            model_prefix=config.model_prefix,
            model_name=config.model_name,
            model_version=config.model_version,
            architecture=config.architecture,
            engine=config.engine,
            memory_size_mb=config.memory_size_mb,
            timeout=Duration.seconds(config.timeout_seconds),
            ephemeral_storage_mb=config.ephemeral_storage_mb,
            max_batch_size=config.max_batch_size,
            reserved_concurrency=config.reserved_concurrency,
            provisioned_concurrency=config.provisioned_concurrency,
            snap_start=config.snap_start,
            log_retention=log_retention,
            metrics_namespace=config.metrics_namespace,
            cors_allow_origin=config.cors_allow_origin,
        )
        self.api = InferenceApi(
            self,
            "Api",
            handler=self.inference_function.live_alias,
            auth_mode=config.auth_mode,
            throttle_rate_limit=config.throttle_rate_limit,
            throttle_burst_limit=config.throttle_burst_limit,
            api_key_quota_per_day=config.api_key_quota_per_day,
            cors_allow_origin=config.cors_allow_origin,
            log_retention=log_retention,
            execution_log_level=config.execution_log_level,
            create_cloudwatch_role=config.api_gateway_cloudwatch_role,
        )
        self._build_operations(config)
        self.batch_function: BatchFunction | None = None
        self.batch_state_machine: BatchStateMachine | None = None
        if config.batch_inference:
            self._build_batch(config, model_bucket, log_retention)
        self._add_outputs(config, model_bucket)

    def _build_operations(self, config: DeploymentConfig) -> None:
        """Alarms, dashboard, gradual rollout with automatic rollback, and warm capacity when asked."""
        live_alias = self.inference_function.live_alias
        metrics = InferenceMetrics(
            api_name=self.api.rest_api.rest_api_name,
            stage_name=STAGE_NAME,
            alias=live_alias,
            function=self.inference_function.function,
            metrics_namespace=config.metrics_namespace,
            service_name=DEPLOYED_SERVICE_NAME,
        )
        self.alarms = InferenceAlarms(
            self,
            "Alarms",
            metrics=metrics,
            server_error_rate_percent=config.alarm_5xx_rate_percent,
            p99_latency_ms=config.alarm_p99_latency_ms,
            function_errors=config.alarm_function_errors,
            throttles=config.alarm_throttles,
            model_load_failures=config.alarm_model_load_failures,
            alarm_email=config.alarm_email,
        )
        self.rollout = SafeRollout(
            self,
            "Rollout",
            alias=live_alias,
            deployment_preference=config.deployment_preference,
            rollback_alarms=self.alarms.rollback_alarms,
        )
        if config.provisioned_concurrency_max:
            add_provisioned_concurrency_autoscaling(
                live_alias, minimum=config.provisioned_concurrency, maximum=config.provisioned_concurrency_max
            )
        self.dashboard = InferenceDashboard(
            self,
            "Dashboard",
            metrics=metrics,
            alarms=[*self.alarms.all_alarms, *self.alarms.rollback_alarms],
            function_log_group=self.inference_function.log_group,
            provisioned_concurrency=config.provisioned_concurrency > 0,
            snap_start=config.snap_start,
        )

    def _build_batch(
        self, config: DeploymentConfig, model_bucket: s3.IBucket, log_retention: logs.RetentionDays
    ) -> None:
        """The opt-in batch path: a Distributed Map over S3 images, the same image and model."""

        def bucket(construct_id: str, name: str | None) -> s3.IBucket:
            return model_bucket if name is None else s3.Bucket.from_bucket_name(self, construct_id, name)

        locations = BatchLocations(
            input_bucket=bucket("BatchInputBucket", config.batch_input_bucket),
            input_prefixes=config.batch_input_prefixes,
            output_bucket=bucket("BatchOutputBucket", config.batch_output_bucket),
            output_prefix=config.batch_output_prefix,
            input_key_arn=config.batch_input_kms_key_arn,
            output_key_arn=config.batch_output_kms_key_arn,
        )
        self.batch_function = BatchFunction(
            self,
            "BatchFunction",
            model_bucket=model_bucket,
            model_prefix=config.model_prefix,
            model_name=config.model_name,
            architecture=config.architecture,
            engine=config.engine,
            locations=locations,
            memory_size_mb=config.batch_memory_size_mb,
            timeout=Duration.seconds(config.batch_timeout_seconds),
            log_retention=log_retention,
            reserved_concurrency=config.batch_reserved_concurrency,
        )
        self.batch_state_machine = BatchStateMachine(
            self,
            "BatchStateMachine",
            function=self.batch_function.function,
            locations=locations,
            images_per_invocation=config.batch_images_per_invocation,
            max_concurrency=config.batch_max_concurrency,
            tolerated_failure_percent=config.batch_tolerated_failure_percent,
            log_retention=log_retention,
        )
        # The logical IDs these were first deployed with, when one construct ("Batch") held the
        # function and the state machine: kept, so that an update replaces none of them.
        for resource, logical_id in (
            (self.batch_function.log_group, "BatchFunctionLogGroup8E6655A7"),
            (self.batch_function.role, "BatchFunctionRole51C30A4A"),
            (self.batch_function.function, "BatchFunctionD66237ED"),
            (self.batch_state_machine.log_group, "BatchStateMachineLogGroupCF6D492C"),
            (self.batch_state_machine.role, "BatchStateMachineRole4E30FD04"),
            (self.batch_state_machine.state_machine, "BatchStateMachineA1FF2995"),
            (self.batch_state_machine.child_executions_policy, "BatchChildExecutionsPolicyC1472F7D"),
        ):
            keep_logical_id(resource, logical_id)

    def _batch_outputs(self, config: DeploymentConfig) -> dict[StackOutput, tuple[str, str]]:
        batch = self.batch_state_machine
        if batch is None:
            return {}
        return {
            StackOutput.BATCH_STATE_MACHINE_ARN: (
                batch.state_machine.state_machine_arn,
                "Batch jobs: python -m endpoint_client batch --input s3://... starts and follows one",
            ),
            StackOutput.BATCH_INPUT_LOCATIONS: (
                ",".join(batch.locations.input_uris()),
                "Where batch jobs may read images and manifests (comma-separated)",
            ),
            StackOutput.BATCH_OUTPUT_LOCATION: (
                batch.locations.output_uri(),
                "Where batch jobs write results: <this>/<job name>/",
            ),
            StackOutput.BATCH_MEMORY_SIZE_MB: (
                str(config.batch_memory_size_mb),
                "Batch function memory (MB)",
            ),
            StackOutput.BATCH_IMAGES_PER_INVOCATION: (
                str(config.batch_images_per_invocation),
                "Images per batch function invocation",
            ),
            StackOutput.BATCH_MAX_CONCURRENCY: (
                str(config.batch_max_concurrency),
                "Most child executions (batch function invocations) a job may run at once",
            ),
        }

    def _add_outputs(self, config: DeploymentConfig, model_bucket: s3.IBucket) -> None:
        model_key_prefix = artifact_model_prefix(config.model_prefix, config.model_name)
        model_location = f"s3://{model_bucket.bucket_name}/{model_key_prefix}/"
        outputs: dict[StackOutput, tuple[str, str]] = {
            StackOutput.ENDPOINT_URL: (
                self.api.rest_api.url,
                "Base URL of the API: POST <url>predict, GET <url>health",
            ),
            StackOutput.MODEL_BUCKET_NAME: (
                model_bucket.bucket_name,
                "Bucket that holds the model artifacts",
            ),
            StackOutput.MODEL_STORE_URI: (
                self.inference_function.model_store_uri,
                "Model store to publish to (python -m model_training publish)",
            ),
            StackOutput.MODEL_LOCATION: (
                model_location,
                "Where the served model's versions and LATEST pointer live",
            ),
            StackOutput.MODEL_NAME: (config.model_name, "Model the function serves"),
            StackOutput.MODEL_VERSION: (
                config.model_version,
                "Version the function serves ('latest' follows LATEST)",
            ),
            StackOutput.MODEL_ENGINE: (
                config.engine.value,
                "Engine the functions serve with: torch (model.pt) or onnxruntime (model.onnx)",
            ),
            StackOutput.AUTH_MODE: (
                config.auth_mode.value,
                "How callers authenticate: iam (SigV4), api_key or none",
            ),
            StackOutput.FUNCTION_NAME: (
                self.inference_function.function.function_name,
                "The inference function",
            ),
            StackOutput.DASHBOARD_NAME: (
                self.dashboard.dashboard.dashboard_name,
                "CloudWatch dashboard of this stack",
            ),
            StackOutput.DEPLOYMENT_APPLICATION_NAME: (
                self.rollout.deployment_group.application.application_name,
                "CodeDeploy application that shifts the live alias",
            ),
            StackOutput.DEPLOYMENT_GROUP_NAME: (
                self.rollout.deployment_group.deployment_group_name,
                "CodeDeploy deployment group: aws deploy list-deployments --deployment-group-name <name>",
            ),
        }
        if self.alarms.topic is not None:
            outputs[StackOutput.ALARM_TOPIC_ARN] = (
                self.alarms.topic.topic_arn,
                "SNS topic the alarms notify",
            )
        if self.api.api_key is not None:
            outputs[StackOutput.API_KEY_ID] = (
                self.api.api_key.key_id,
                "aws apigateway get-api-key --include-value --api-key <id> shows the key",
            )
        outputs.update(self._batch_outputs(config))
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, str(output_id), value=value, description=description)
