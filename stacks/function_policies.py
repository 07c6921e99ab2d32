"""The statements every function role of this app holds, and the cdk-nag findings they raise.

Every function built from the image (the API's, the batch function) reads one model's objects,
writes its own log group and sends X-Ray traces; ContainerFunction puts these in each role.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs

from stacks.nag import acknowledge_statement_wildcards

XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")


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
