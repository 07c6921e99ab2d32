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

# Context value (stacks.config.DEPLOYMENT_PREFERENCES) -> CodeDeploy's predefined configuration.
DEPLOYMENT_CONFIGS: dict[str, codedeploy.ILambdaDeploymentConfig] = {
    "all_at_once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
    "canary_10percent_5minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "canary_10percent_10minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_10_MINUTES,
    "canary_10percent_15minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_15_MINUTES,
    "canary_10percent_30minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_30_MINUTES,
    "linear_10percent_every_1minute": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "linear_10percent_every_2minutes": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_2_MINUTES,
    "linear_10percent_every_3minutes": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_3_MINUTES,
    "linear_10percent_every_10minutes": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_10_MINUTES,
}


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
        deployment_preference: str,
        rollback_alarms: Sequence[cloudwatch.Alarm],
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = self._build_role(alias, rollback_alarms)
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            alias=alias,
            deployment_config=DEPLOYMENT_CONFIGS[deployment_preference],
            alarms=list(rollback_alarms),
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
            # Immutable: CDK would otherwise attach AWSCodeDeployRoleForLambdaLimited, which may update
            # every alias in the account; the role below reaches this alias and these alarms only.
            role=iam.Role.from_role_arn(self, "ImmutableRole", self.role.role_arn, mutable=False),
        )

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
