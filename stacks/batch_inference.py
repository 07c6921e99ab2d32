"""Batch inference (opt-in): a Standard state machine whose Distributed Map fans batches of images
out to a batch function built from the same image asset as the API function.

The job's execution input (the client's `batch` command writes it; docs in the README):

    {"source": "prefix" | "csv" | "json",   "prefix": "<key prefix>" | "key": "<manifest key>",
     "model_version": "latest" | "<version>", "max_concurrency": <1..the configured maximum>}

Steps: name the results folder after the execution, resolve the model version once (a Lambda
step), check the concurrency against the configured maximum, then one Distributed Map for the
chosen item source. Each child execution (Express) invokes the function with one batch
(`{"Items": [...], "BatchInput": {"bucket", "model_version"}}`) and returns one result line per
image; the result writer flattens those lines into JSON Lines files under
`<output prefix>/<execution name>/`. The function reads only the model's and the input
prefixes and writes nothing; the state machine invokes only that function, lists and reads only
the input prefixes and writes only the output prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambda_src.artifact import model_prefix as artifact_model_prefix
from lambda_src.contract import BATCH_HANDLER, ENV_MODEL_NAME, ENV_MODEL_STORE, ENV_MODEL_VERSION
from stacks.config import Architecture
from stacks.inference_function import (
    LAMBDA_SOURCE_DIR,
    XRAY_ACTIONS,
    acknowledge_function_role,
    image_platform,
    lambda_architecture,
    own_logs_statement,
    read_model_statement,
    traces_statement,
)
from stacks.nag import acknowledge_statement_wildcards, flatten_cfn_reference

# Lambda errors worth another try: throttling (the account's or the function's concurrency is
# used up) and transient service faults. Everything else is the batch's own failure.
RETRIED_LAMBDA_ERRORS = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.SdkClientException",
    "Lambda.AWSLambdaException",
)
RETRY_INTERVAL = Duration.seconds(2)
RETRY_MAX_ATTEMPTS = 6
RETRY_BACKOFF_RATE = 2.0
RETRY_MAX_DELAY = Duration.seconds(60)  # waits of 2, 4, 8, 16, 32 and 60 s: 122 s at most

ITEM_SOURCES = ("prefix", "csv", "json")
# CloudWatch Logs APIs for vended log delivery support no resource-level permissions.
LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
XRAY_STATE_MACHINE_ACTIONS = (*XRAY_ACTIONS, "xray:GetSamplingRules", "xray:GetSamplingTargets")


class BatchInference(Construct):
    """The batch function, its role and log group; the state machine, its role and log group.

    Exposes `function`, `function_role`, `state_machine` and `state_machine_role`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model_bucket: s3.IBucket,
        model_prefix: str,
        model_name: str,
        architecture: Architecture,
        input_bucket: s3.IBucket,
        input_prefixes: Sequence[str],
        output_bucket: s3.IBucket,
        output_prefix: str,
        memory_size_mb: int,
        timeout: Duration,
        images_per_invocation: int,
        max_concurrency: int,
        tolerated_failure_percent: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.input_bucket = input_bucket
        self.output_bucket = output_bucket
        self.input_prefixes = tuple(input_prefixes)
        self.output_prefix = output_prefix
        self.function_log_group = _log_group(self, "FunctionLogGroup", log_retention)
        self.function_role = self._build_function_role(
            model_bucket.arn_for_objects(f"{artifact_model_prefix(model_prefix, model_name)}/*")
        )
        self.function = self._build_function(
            model_store_uri=f"s3://{model_bucket.bucket_name}/{model_prefix}",
            model_name=model_name,
            architecture=architecture,
            memory_size_mb=memory_size_mb,
            timeout=timeout,
        )
        self.state_machine_log_group = _log_group(self, "StateMachineLogGroup", log_retention)
        self.state_machine_role = self._build_state_machine_role()
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="Classify every image under an S3 prefix or in a manifest; results as JSON Lines",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(
                self._definition(images_per_invocation, max_concurrency, tolerated_failure_percent)
            ),
            role=iam.Role.from_role_arn(
                self, "ImmutableStateMachineRole", self.state_machine_role.role_arn, mutable=False
            ),
            logs=sfn.LogOptions(destination=self.state_machine_log_group, level=sfn.LogLevel.ALL),
            tracing_enabled=True,
        )
        # CDK makes this policy for the Distributed Map's child executions and would attach it to the
        # role; the role is immutable here, so it would stay an unattached construct. The complete
        # policy is built below instead.
        self.state_machine.node.try_remove_child("DistributedMapPolicy")
        self._allow_child_executions()

    def _input_objects(self) -> list[str]:
        return [self.input_bucket.arn_for_objects(f"{prefix}*") for prefix in self.input_prefixes]

    def _output_objects(self) -> str:
        return self.output_bucket.arn_for_objects(f"{self.output_prefix}/*")

    def _build_function(
        self,
        *,
        model_store_uri: str,
        model_name: str,
        architecture: Architecture,
        memory_size_mb: int,
        timeout: Duration,
    ) -> lambda_.DockerImageFunction:
        return lambda_.DockerImageFunction(
            self,
            "Function",
            description="Batch image classification: one Distributed Map batch of S3 images per invocation",
            # The API function's image asset (same directory and platform, so the same image),
            # started with the batch entry point instead.
            code=lambda_.DockerImageCode.from_image_asset(
                str(LAMBDA_SOURCE_DIR), platform=image_platform(architecture), cmd=[BATCH_HANDLER]
            ),
            architecture=lambda_architecture(architecture),
            memory_size=memory_size_mb,
            timeout=timeout,
            # The role is complete: CDK adds no grants of its own to an immutable reference.
            role=iam.Role.from_role_arn(
                self, "ImmutableFunctionRole", self.function_role.role_arn, mutable=False
            ),
            log_group=self.function_log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                ENV_MODEL_STORE: model_store_uri,
                ENV_MODEL_NAME: model_name,
                ENV_MODEL_VERSION: "latest",  # a default only: each job names its resolved version
            },
        )

    def _build_function_role(self, model_objects: str) -> iam.Role:
        role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Batch function: read one model's artifacts and the input images, write its own logs",
            inline_policies={
                "BatchFunction": iam.PolicyDocument(
                    statements=[
                        read_model_statement(model_objects),
                        iam.PolicyStatement(
                            sid="ReadInputImages", actions=["s3:GetObject"], resources=self._input_objects()
                        ),
                        own_logs_statement(self.function_log_group),
                        traces_statement(),
                    ]
                )
            },
        )
        acknowledge_function_role(role)
        acknowledge_statement_wildcards(
            role,
            statement_sid="ReadInputImages",
            reason="Read access is limited to the configured input prefixes (context batch_input_prefixes); "
            "the images under them are not known at deploy time.",
        )
        return role

    def _build_state_machine_role(self) -> iam.Role:
        list_prefixes = [f"{prefix}*" for prefix in self.input_prefixes]
        role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Batch state machine: read the inputs, invoke the batch function, write the results",
            inline_policies={
                "BatchStateMachine": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="InvokeBatchFunction",
                            actions=["lambda:InvokeFunction"],
                            resources=[self.function.function_arn],
                        ),
                        iam.PolicyStatement(
                            sid="ListInputImages",
                            actions=["s3:ListBucket"],
                            resources=[self.input_bucket.bucket_arn],
                            conditions={"StringLike": {"s3:prefix": list_prefixes}},
                        ),
                        # CSV and JSON manifests of keys live under the input prefixes too.
                        iam.PolicyStatement(
                            sid="ReadManifests", actions=["s3:GetObject"], resources=self._input_objects()
                        ),
                        # What the Distributed Map's result writer needs (multipart uploads included).
                        iam.PolicyStatement(
                            sid="WriteResults",
                            actions=[
                                "s3:PutObject",
                                "s3:GetObject",
                                "s3:ListMultipartUploadParts",
                                "s3:AbortMultipartUpload",
                            ],
                            resources=[self._output_objects()],
                        ),
                        iam.PolicyStatement(
                            sid="DeliverLogs", actions=list(LOG_DELIVERY_ACTIONS), resources=["*"]
                        ),
                        iam.PolicyStatement(
                            sid="WriteTraces", actions=list(XRAY_STATE_MACHINE_ACTIONS), resources=["*"]
                        ),
                    ]
                )
            },
        )
        _acknowledge_star_resources(role, "CloudWatch Logs' log delivery actions and X-Ray's")
        for sid, what in (("ReadManifests", "manifests"), ("WriteResults", "result files")):
            acknowledge_statement_wildcards(
                role,
                statement_sid=sid,
                reason=f"Limited to the configured prefixes; the {what} under them are named per job.",
            )
        return role

    def _allow_child_executions(self) -> None:
        """The Distributed Map starts, follows, stops and redrives its child executions.

        A separate policy: these statements name the state machine, which needs the role first.
        """
        stack = Stack.of(self)
        name = stack.split_arn(
            self.state_machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME
        ).resource_name
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        map_runs = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}/*:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        policy = iam.Policy(
            self,
            "ChildExecutionsPolicy",
            roles=[self.state_machine_role],
            statements=[
                iam.PolicyStatement(
                    sid="StartChildExecutions",
                    actions=["states:StartExecution"],
                    resources=[self.state_machine.state_machine_arn],
                ),
                iam.PolicyStatement(
                    sid="FollowChildExecutions",
                    actions=["states:DescribeExecution", "states:StopExecution"],
                    resources=[executions],
                ),
                iam.PolicyStatement(
                    sid="RedriveMapRuns", actions=["states:RedriveExecution"], resources=[map_runs]
                ),
            ],
        )
        for resource in (executions, map_runs):
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{flatten_cfn_reference(stack.resolve(resource))}]",
                    reason="Limited to this state machine's own executions and map runs, whose names are "
                    "chosen per job.",
                )
            )

    # The definition -----------------------------------------------------------------------

    def _definition(
        self, images_per_invocation: int, max_concurrency: int, tolerated_failure_percent: int
    ) -> sfn.IChainable:
        name_results = sfn.Pass(
            self,
            "NameResults",
            comment="Each job's results go to their own folder, named after the execution",
            parameters={
                "prefix": sfn.JsonPath.format(f"{self.output_prefix}/{{}}", sfn.JsonPath.execution_name)
            },
            result_path="$.results",
        )
        resolve_version = _retried(
            tasks.LambdaInvoke(
                self,
                "ResolveModelVersion",
                comment="Once per job, so that every batch uses the same published version",
                lambda_function=self.function,
                payload=sfn.TaskInput.from_object(
                    {"resolve_model_version": sfn.JsonPath.string_at("$.model_version")}
                ),
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path="$.model",
            )
        )
        too_many = sfn.Fail(
            self,
            "ConcurrencyAboveLimit",
            error="ConcurrencyAboveLimit",
            cause=f"max_concurrency must be from 1 to {max_concurrency} (context batch_max_concurrency)",
        )
        unknown_source = sfn.Fail(
            self,
            "UnknownItemSource",
            error="UnknownItemSource",
            cause="source must be 'prefix' (with 'prefix'), 'csv' or 'json' (with a manifest 'key')",
        )
        choose_source = sfn.Choice(self, "ChooseItemSource")
        for source, reader in self._item_readers().items():
            choose_source.when(
                sfn.Condition.string_equals("$.source", source),
                self._classify_map(source, reader, images_per_invocation, tolerated_failure_percent),
            )
        choose_source.otherwise(unknown_source)
        check_concurrency = (
            sfn.Choice(self, "CheckConcurrency")
            .when(
                sfn.Condition.or_(
                    sfn.Condition.not_(sfn.Condition.is_present("$.max_concurrency")),
                    sfn.Condition.not_(sfn.Condition.is_numeric("$.max_concurrency")),
                    sfn.Condition.number_less_than("$.max_concurrency", 1),
                    sfn.Condition.number_greater_than("$.max_concurrency", max_concurrency),
                ),
                too_many,
            )
            .otherwise(choose_source)
        )
        return name_results.next(resolve_version).next(check_concurrency)

    def _item_readers(self) -> dict[str, sfn.IItemReader]:
        """Where a job's items come from: an S3 listing, or a CSV (header row `key`) or JSON manifest."""
        key = sfn.JsonPath.string_at("$.key")
        return {
            "prefix": sfn.S3ObjectsItemReader(
                bucket=self.input_bucket, prefix=sfn.JsonPath.string_at("$.prefix")
            ),
            "csv": sfn.S3CsvItemReader(
                bucket=self.input_bucket, key=key, csv_headers=sfn.CsvHeaders.use_first_row()
            ),
            "json": sfn.S3JsonItemReader(bucket=self.input_bucket, key=key),
        }

    def _classify_map(
        self,
        source: str,
        reader: sfn.IItemReader,
        images_per_invocation: int,
        tolerated_failure_percent: int,
    ) -> sfn.DistributedMap:
        label = f"Classify{source.capitalize()}"
        classify = sfn.DistributedMap(
            self,
            label,
            comment=f"Batches of images from the {source} item source, one function invocation each",
            item_reader=reader,
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=images_per_invocation,
                # BatchInput is passed on as written: a ".$" key takes its value from the state's input.
                batch_input={"bucket": self.input_bucket.bucket_name, "model_version.$": "$.model.version"},
            ),
            max_concurrency_path=sfn.JsonPath.string_at("$.max_concurrency"),
            tolerated_failure_percentage=tolerated_failure_percent,
            map_execution_type=sfn.StateMachineType.EXPRESS,
            label=label,
            result_writer_v2=sfn.ResultWriterV2(
                bucket=self.output_bucket,
                prefix=sfn.JsonPath.string_at("$.results.prefix"),
                writer_config=sfn.WriterConfig(
                    output_type=sfn.OutputType.JSONL, transformation=sfn.Transformation.FLATTEN
                ),
            ),
        )
        classify.item_processor(
            _retried(
                tasks.LambdaInvoke(
                    self,
                    f"{label}Batch",
                    lambda_function=self.function,
                    payload_response_only=True,
                    retry_on_service_exceptions=False,
                )
            )
        )
        return classify


def _retried(task: tasks.LambdaInvoke) -> tasks.LambdaInvoke:
    """Retry throttling and transient Lambda faults with exponential backoff and full jitter."""
    task.add_retry(
        errors=list(RETRIED_LAMBDA_ERRORS),
        interval=RETRY_INTERVAL,
        max_attempts=RETRY_MAX_ATTEMPTS,
        backoff_rate=RETRY_BACKOFF_RATE,
        max_delay=RETRY_MAX_DELAY,
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task


def _log_group(scope: Construct, construct_id: str, retention: logs.RetentionDays) -> logs.LogGroup:
    # Logs are operational records, not state: they go with the stack.
    return logs.LogGroup(scope, construct_id, retention=retention, removal_policy=RemovalPolicy.DESTROY)


def _acknowledge_star_resources(role: iam.Role, actions: str) -> None:
    Validations.of(role).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason=f"{actions} support no resource-level permissions (Service Authorization Reference), "
            "so they need Resource '*'.",
        )
    )
