"""The batch state machine: a Standard workflow whose Distributed Map fans batches of images out to
the batch function (stacks/batch_function.py).

The job's execution input (the client's `batch` command writes it; docs/batch.md):

    {"source": "prefix" | "csv" | "json",   "prefix": "<key prefix>" | "key": "<manifest key>",
     "model_version": "latest" | "<version>", "max_concurrency": <1..the configured maximum>}

Steps: name the results folder after the execution, resolve the model version once (a Lambda
step), check the concurrency against the configured maximum, then one Distributed Map for the
chosen item source. Each child execution (Express) invokes the function with one batch
(`{"Items": [...], "BatchInput": {"bucket", "model_version"}}`) and returns one result line per
image; the result writer flattens those lines into JSON Lines files under
`<output prefix>/<execution name>/`. The state machine invokes only that function, lists and
reads only the input prefixes and writes only the output prefix.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.batch_locations import BatchLocations
from stacks.function_policies import XRAY_ACTIONS
from stacks.nag import acknowledge_statement_wildcards

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
VENDED_LOGS_PREFIX = "/aws/vendedlogs/states/"
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


class BatchStateMachine(Construct):
    """The state machine, its role and log group, and the policy for its child executions.

    Exposes `state_machine`, `role`, `log_group` and `locations`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        locations: BatchLocations,
        images_per_invocation: int,
        max_concurrency: int,
        tolerated_failure_percent: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = function
        self.locations = locations
        # Logs are operational records, not state: they go with the stack. Named under
        # /aws/vendedlogs/: for any other name Step Functions adds the group to the account's
        # CloudWatch Logs resource policy, whose 5,120-character limit then fails state machine
        # creation in a busy account.
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"{VENDED_LOGS_PREFIX}{Stack.of(self).stack_name}-{construct_id}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = self._build_role()
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="Classify every image under an S3 prefix or in a manifest; results as JSON Lines",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(
                self._definition(images_per_invocation, max_concurrency, tolerated_failure_percent)
            ),
            role=iam.Role.from_role_arn(self, "ImmutableRole", self.role.role_arn, mutable=False),
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL),
            tracing_enabled=True,
        )
        # CDK makes this policy for the Distributed Map's child executions and would attach it to the
        # role; the role is immutable here, so it would stay an unattached construct. The complete
        # policy is built below instead.
        self.state_machine.node.try_remove_child("DistributedMapPolicy")
        self.child_executions_policy = self._build_child_executions_policy()

    def _build_role(self) -> iam.Role:
        locations = self.locations
        list_prefixes = [f"{prefix}*" for prefix in locations.input_prefixes]
        role = iam.Role(
            self,
            "Role",
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
                            resources=[locations.input_bucket.bucket_arn],
                            conditions={"StringLike": {"s3:prefix": list_prefixes}},
                        ),
                        # CSV and JSON manifests of keys live under the input prefixes too.
                        iam.PolicyStatement(
                            sid="ReadManifests", actions=["s3:GetObject"], resources=locations.input_objects()
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
                            resources=[locations.output_objects()],
                        ),
                        *locations.key_statements(read_inputs=True, write_outputs=True),
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
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="CloudWatch Logs' log delivery actions and X-Ray's support no resource-level "
                "permissions (Service Authorization Reference), so they need Resource '*'.",
            )
        )
        for sid, what in (("ReadManifests", "manifests"), ("WriteResults", "result files")):
            acknowledge_statement_wildcards(
                role,
                statement_sid=sid,
                reason=f"Limited to the configured prefixes; the {what} under them are named per job.",
            )
        return role

    def _build_child_executions_policy(self) -> iam.Policy:
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
            roles=[self.role],
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
        for sid in ("FollowChildExecutions", "RedriveMapRuns"):
            acknowledge_statement_wildcards(
                policy,
                statement_sid=sid,
                reason="Limited to this state machine's own executions and map runs, whose names are "
                "chosen per job.",
            )
        return policy

    def _definition(
        self, images_per_invocation: int, max_concurrency: int, tolerated_failure_percent: int
    ) -> sfn.IChainable:
        name_results = sfn.Pass(
            self,
            "NameResults",
            comment="Each job's results go to their own folder, named after the execution",
            parameters={
                "prefix": sfn.JsonPath.format(
                    f"{self.locations.output_prefix}/{{}}", sfn.JsonPath.execution_name
                )
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
                bucket=self.locations.input_bucket, prefix=sfn.JsonPath.string_at("$.prefix")
            ),
            "csv": sfn.S3CsvItemReader(
                bucket=self.locations.input_bucket, key=key, csv_headers=sfn.CsvHeaders.use_first_row()
            ),
            "json": sfn.S3JsonItemReader(bucket=self.locations.input_bucket, key=key),
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
                batch_input={
                    "bucket": self.locations.input_bucket.bucket_name,
                    "model_version.$": "$.model.version",
                },
            ),
            max_concurrency_path=sfn.JsonPath.string_at("$.max_concurrency"),
            tolerated_failure_percentage=tolerated_failure_percent,
            map_execution_type=sfn.StateMachineType.EXPRESS,
            label=label,
            result_writer_v2=sfn.ResultWriterV2(
                bucket=self.locations.output_bucket,
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
