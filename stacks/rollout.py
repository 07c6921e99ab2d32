"""Safe rollout: CodeDeploy shifts the live alias to each new function version, and rolls it back on alarm.

Every change to the function's code or configuration (the pinned model version is in its
environment) publishes a new version; CloudFormation then hands the alias update to CodeDeploy,
which shifts traffic as the deployment preference says and watches the rollback alarms meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import DeploymentPreference


def deployment_config(preference: DeploymentPreference) -> codedeploy.ILambdaDeploymentConfig:
    """CodeDeploy's predefined configuration for the context choice (the choice's member names are CDK's)."""
    config: codedeploy.ILambdaDeploymentConfig = getattr(codedeploy.LambdaDeploymentConfig, preference.name)
    return config


class SafeRollout(Construct):
    """A CodeDeploy application and deployment group for the live alias, with automatic rollback.

    Exposes `deployment_group` and `role`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: lambda_.Alias,
        deployment_preference: DeploymentPreference,
        rollback_alarms: Sequence[cloudwatch.Alarm],
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = self._build_role(alias, rollback_alarms)
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            alias=alias,
            deployment_config=deployment_config(deployment_preference),
            alarms=list(rollback_alarms),
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
            # Immutable: CDK would otherwise attach AWSCodeDeployRoleForLambdaLimited, which may update
            # every alias in the account; the role below reaches this alias and these alarms only.
            role=iam.Role.from_role_arn(self, "ImmutableRole", self.role.role_arn, mutable=False),
        )
        # The rollback alarms watch the version being deployed: their dimensions must name it
        # before CloudFormation hands the alias's update to CodeDeploy.
        for alarm in rollback_alarms:
            alias.node.add_dependency(alarm)

    def _build_role(self, alias: lambda_.Alias, rollback_alarms: Sequence[cloudwatch.Alarm]) -> iam.Role:
        function_arn = alias.version.lambda_.function_arn
        # The alias ARN spelled out: a reference to the alias would make this role depend on it, while
        # the alias's update policy depends on the deployment group and so on this role (a cycle).
        alias_arn = f"{function_arn}:{alias.alias_name}"
        return iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
            description="CodeDeploy: shift the inference function's live alias, read its rollback alarms",
            inline_policies={
                "SafeRollout": iam.PolicyDocument(
                    statements=[
                        # What AWSCodeDeployRoleForLambdaLimited grants, narrowed to this function.
                        iam.PolicyStatement(
                            sid="ShiftLiveAlias",
                            actions=[
                                "lambda:GetAlias",
                                "lambda:UpdateAlias",
                                "lambda:GetProvisionedConcurrencyConfig",
                            ],
                            resources=[function_arn, alias_arn],
                        ),
                        iam.PolicyStatement(
                            sid="ReadRollbackAlarms",
                            actions=["cloudwatch:DescribeAlarms"],
                            resources=[alarm.alarm_arn for alarm in rollback_alarms],
                        ),
                    ]
                )
            },
        )
