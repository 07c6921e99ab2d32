"""The batch function: the API's image started with the batch entry point, reading the input prefixes."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_src.artifact import LATEST
from lambda_src.contract import BATCH_HANDLER, ModelEngine
from stacks.batch_locations import BatchLocations
from stacks.config import Architecture
from stacks.container_function import ContainerFunction
from stacks.nag import acknowledge_statement_wildcards


class BatchFunction(ContainerFunction):
    """Classifies one Distributed Map batch of S3 images per invocation; writes nothing to S3.

    Its role reads the model's objects and the images under the input prefixes only (and decrypts
    with the input bucket's KMS key, when it has one).
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
        engine: ModelEngine,
        locations: BatchLocations,
        memory_size_mb: int,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        reserved_concurrency: int,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Batch image classification: one Distributed Map batch of S3 images per invocation",
            role_description=(
                "Batch function: read one model's artifacts and the input images, write its own logs"
            ),
            policy_name="BatchFunction",
            model_bucket=model_bucket,
            model_prefix=model_prefix,
            model_name=model_name,
            model_version=LATEST,  # a default only: each job names its resolved version
            architecture=architecture,
            engine=engine,
            memory_size_mb=memory_size_mb,
            timeout=timeout,
            log_retention=log_retention,
            statements=[
                iam.PolicyStatement(
                    sid="ReadInputImages", actions=["s3:GetObject"], resources=locations.input_objects()
                ),
                *locations.key_statements(read_inputs=True, write_outputs=False),
            ],
            command=[BATCH_HANDLER],
            # Its own share of the account's concurrency: jobs never take the API's, and the map
            # (at most this wide) never throttles its own batches.
            reserved_concurrency=reserved_concurrency,
        )
        acknowledge_statement_wildcards(
            self.role,
            statement_sid="ReadInputImages",
            reason="Read access is limited to the configured input prefixes (context batch_input_prefixes); "
            "the images under them are not known at deploy time.",
        )
