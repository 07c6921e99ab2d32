"""cdk-nag acknowledgements for findings that are named after references resolved late.

cdk-nag names an IAM wildcard finding after the statement's resource as it appears in the
template, e.g. `AwsSolutions-IAM5[Resource::<Bucket.Arn>/models/demo/*]`. For a resource from
another stack that text exists only once CDK has resolved the cross-stack reference (it becomes
`Fn::GetStackOutput` or `Fn::ImportValue`), which happens after the constructs are built and
before cdk-nag runs; likewise a reference to a resource whose logical ID is pinned after it was
built (stacks/logical_ids.py). So the acknowledgement is attached by a construct validation,
which CDK runs in between, for exactly the resources of one named statement.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IValidation


def acknowledge_statement_wildcards(owner: iam.Role | iam.Policy, *, statement_sid: str, reason: str) -> None:
    """Acknowledge AwsSolutions-IAM5 for the wildcard resources of one statement of a role's inline
    policies or of a policy."""
    owner.node.add_validation(_StatementWildcardAcknowledgement(owner, statement_sid, reason))


@jsii.implements(IValidation)
class _StatementWildcardAcknowledgement:
    def __init__(self, owner: iam.Role | iam.Policy, statement_sid: str, reason: str) -> None:
        self._owner = owner
        self._statement_sid = statement_sid
        self._reason = reason

    def validate(self) -> list[str]:
        resources = self._statement_resources()
        if resources is None:
            return [f"no policy statement with Sid {self._statement_sid!r} to acknowledge"]
        for resource in resources:
            flat = flatten_cfn_reference(resource)
            if "*" in flat:
                Validations.of(self._owner).acknowledge(
                    Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{flat}]", reason=self._reason)
                )
        return []

    def _statement_resources(self) -> list[Any] | None:
        for document in self._documents():
            for statement in document["Statement"]:
                if statement.get("Sid") == self._statement_sid:
                    resource = statement["Resource"]
                    return resource if isinstance(resource, list) else [resource]
        return None

    def _documents(self) -> list[Any]:
        # The L1 properties resolve with the property names of CfnRole.PolicyProperty.
        stack = Stack.of(self._owner)
        if isinstance(self._owner, iam.Policy):
            cfn_policy = self._owner.node.default_child
            return [stack.resolve(cfn_policy.policy_document)]  # type: ignore[union-attr]
        cfn_role = self._owner.node.default_child
        policies = stack.resolve(cfn_role.policies) or []  # type: ignore[union-attr]
        return [policy["policyDocument"] for policy in policies]


def flatten_cfn_reference(node: Any) -> str:  # noqa: PLR0911 (one return per case, as in cdk-nag)
    """The text cdk-nag gives a (possibly intrinsic) resource, as its flattenCfnReference does."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_cfn_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_cfn_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_cfn_reference(node['Ref'])}>"
    # cdk-nag falls back to JSON.stringify (no spaces), e.g. for Fn::GetStackOutput.
    return json.dumps(node, separators=(",", ":"))
