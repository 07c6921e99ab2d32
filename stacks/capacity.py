"""Warm capacity: provisioned concurrency on the live alias that follows demand within a range."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_

# Application Auto Scaling keeps the provisioned environments about this busy: headroom for bursts
# before requests spill over to cold, on-demand environments (AWS's own example uses 0.7).
PROVISIONED_UTILIZATION_TARGET = 0.7


def add_provisioned_concurrency_autoscaling(alias: lambda_.Alias, *, minimum: int, maximum: int) -> None:
    """Scale the alias's provisioned concurrency between minimum and maximum on its utilization."""
    scaling = alias.add_auto_scaling(min_capacity=minimum, max_capacity=maximum)
    scaling.scale_on_utilization(utilization_target=PROVISIONED_UTILIZATION_TARGET)
