"""Logical IDs that must survive a change of construct tree.

CloudFormation replaces a resource whose logical ID changes: a new log group, a new role, a new
state machine with a new ARN. When constructs move, `keep_logical_id` pins the ID a deployed
stack already has.
"""

from __future__ import annotations

from aws_cdk import CfnElement
from constructs import Construct


def keep_logical_id(construct: Construct, logical_id: str) -> None:
    """Give the CloudFormation resource of `construct` (an L1 or an L2 around one) `logical_id`."""
    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    if not isinstance(element, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource of its own")
    element.override_logical_id(logical_id)
