"""Day-two operations: the deployment's metrics, its CloudWatch alarms (optionally e-mailed) and a dashboard.

The handler's own metrics (namespace POWERTOOLS_METRICS_NAMESPACE) are written by lambda_src as
EMF lines with two dimension sets, `service` and `service` + `function_version`;
lambda_src.contract.Metric names them for both sides.

Two kinds of alarms. The paging alarms watch the whole service (the API stage, every version
behind the live alias). The rollback alarms watch only the function version being deployed
(Lambda's `ExecutedVersion` dimension on the alias's metrics, the handler's `function_version`):
during a canary the old version may still be failing, and a deployment that fixes it must not
be rolled back for the old version's errors. Latency is not in the rollback set: at canary
traffic a minute's p99 is about its slowest request, a cold start of the new version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from lambda_src.contract import METRIC_SERVICE_DIMENSION, METRIC_VERSION_DIMENSION, Metric

METRIC_PERIOD = Duration.minutes(1)  # alarms evaluate, and the dashboard plots, per minute
# Rates and latency alarm when 2 of the last 3 minutes breach: one slow cold start or one failed
# request in a quiet minute must not page anyone, nor roll a deployment back.
RATE_EVALUATION_PERIODS = 3
RATE_DATAPOINTS_TO_ALARM = 2
DASHBOARD_LOG_BIN = "5m"  # Logs Insights widgets count per 5 minutes
KEY_DELETION_WINDOW_DAYS = 7  # the alarm topic's key, once the stack is gone (the minimum KMS allows)
# The deployed version's 5xx rate counts only in minutes with at least this many requests to it:
# at canary traffic one failed request in a minute of two would be a 50% rate.
ROLLBACK_MIN_REQUESTS_PER_MINUTE = 5


@dataclass(frozen=True)
class AlarmEvaluation:
    """How an alarm judges its metric against the threshold, and over how many minutes."""

    comparison: cloudwatch.ComparisonOperator
    evaluation_periods: int
    datapoints_to_alarm: int | None = None  # None: all of the evaluation periods


# Rates and latency: above the threshold in 2 of the last 3 minutes.
SUSTAINED_ABOVE = AlarmEvaluation(
    comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluation_periods=RATE_EVALUATION_PERIODS,
    datapoints_to_alarm=RATE_DATAPOINTS_TO_ALARM,
)
# Counts: the threshold reached in any one minute.
REACHED_IN_A_MINUTE = AlarmEvaluation(
    comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    evaluation_periods=1,
)


class InferenceMetrics:
    """The metrics of one deployment, defined once for its alarms and its dashboard.

    API metrics name the API and stage by their literal names, not by references to the API's
    resources: the rollback alarms must not depend on the API, since the API depends on the alias
    and the alias's CodeDeploy update policy depends on the alarms (a dependency cycle).
    """

    def __init__(
        self,
        *,
        api_name: str,
        stage_name: str,
        alias: lambda_.Alias,
        function: lambda_.IFunction,
        metrics_namespace: str,
        service_name: str,
    ) -> None:
        self.api_dimensions = {"ApiName": api_name, "Stage": stage_name}
        self.alias = alias
        # The version the live alias is being moved to: each deployment publishes a new one, and
        # the rollback alarms' dimensions follow it in the same stack update.
        self.deployed_version = alias.version.version
        self.function = function
        self.metrics_namespace = metrics_namespace
        self.service_name = service_name

    def api_metric(self, name: str, statistic: str, label: str) -> cloudwatch.Metric:
        """An API Gateway metric of the stage (Count, 4XXError, 5XXError, Latency, IntegrationLatency)."""
        return cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name=name,
            dimensions_map=self.api_dimensions,
            statistic=statistic,
            period=METRIC_PERIOD,
            label=label,
        )

    def api_5xx_rate(self) -> cloudwatch.Metric:
        # 5XXError is 0 or 1 per request, so its average is the fraction of requests that failed.
        return self.api_metric("5XXError", "Average", "5XX rate")

    def api_latency(self, statistic: str) -> cloudwatch.Metric:
        return self.api_metric("Latency", statistic, f"API latency {statistic}")

    def alias_metric(self, name: str, statistic: str, label: str) -> cloudwatch.Metric:
        """A Lambda metric of invocations through the live alias (the ones callers make)."""
        return self.alias.metric(name, statistic=statistic, period=METRIC_PERIOD, label=label)

    def deployed_version_metric(self, name: str, statistic: str, label: str) -> cloudwatch.Metric:
        """A Lambda metric of the live alias's invocations that ran the version being deployed."""
        function_name = self.function.function_name
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={
                "FunctionName": function_name,
                "Resource": f"{function_name}:{self.alias.alias_name}",
                "ExecutedVersion": self.deployed_version,
            },
            statistic=statistic,
            period=METRIC_PERIOD,
            label=label,
        )

    def deployed_version_handler_metric(self, name: Metric, statistic: str, label: str) -> cloudwatch.Metric:
        """A metric the handler writes, as the version being deployed wrote it."""
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=name.value,
            dimensions_map={
                METRIC_SERVICE_DIMENSION: self.service_name,
                METRIC_VERSION_DIMENSION: self.deployed_version,
            },
            statistic=statistic,
            period=METRIC_PERIOD,
            label=label,
        )

    def deployed_version_5xx_rate(self) -> cloudwatch.MathExpression:
        """The share of the deployed version's answers that were 5xx, in minutes with enough of them."""
        return cloudwatch.MathExpression(
            expression=f"IF(requests >= {ROLLBACK_MIN_REQUESTS_PER_MINUTE}, errors / requests, 0)",
            using_metrics={
                # ServerErrors is 0 or 1 per request: its sum counts 5xx answers, its count requests
                "errors": self.deployed_version_handler_metric(Metric.SERVER_ERRORS, "Sum", "5xx answers"),
                "requests": self.deployed_version_handler_metric(
                    Metric.SERVER_ERRORS, "SampleCount", "requests"
                ),
            },
            label="deployed version's 5xx rate",
            period=METRIC_PERIOD,
        )

    def concurrent_executions(self) -> cloudwatch.Metric:
        return self.function.metric(
            "ConcurrentExecutions", statistic="Maximum", period=METRIC_PERIOD, label="concurrent executions"
        )

    def handler_metric(self, name: Metric, statistic: str, label: str) -> cloudwatch.Metric:
        """A metric the handler writes (EMF), with its single dimension `service`."""
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=name.value,
            dimensions_map={METRIC_SERVICE_DIMENSION: self.service_name},
            statistic=statistic,
            period=METRIC_PERIOD,
            label=label,
        )

    def invocations_by_function_version(self) -> cloudwatch.MathExpression:
        """Invocations per published version behind the alias: both versions show during a rollout."""
        search = (
            'SEARCH(\'{AWS/Lambda,FunctionName,Resource,ExecutedVersion} MetricName="Invocations" '
            f"FunctionName=\"{self.function.function_name}\"', 'Sum', {int(METRIC_PERIOD.to_seconds())})"
        )
        return cloudwatch.MathExpression(expression=search, using_metrics={}, label="", period=METRIC_PERIOD)


class InferenceAlarms(Construct):
    """One alarm per way the service fails, thresholds from context; optionally e-mailed via SNS.

    Exposes each alarm, `all_alarms`, `rollback_alarms` (the ones a deployment must not trigger)
    and `topic` (None without an e-mail address).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        metrics: InferenceMetrics,
        server_error_rate_percent: float,
        p99_latency_ms: int,
        function_errors: int,
        throttles: int,
        model_load_failures: int,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._name_prefix = Stack.of(self).stack_name
        self.api_5xx_rate = self._build_alarm(
            "Api5xxRate",
            metrics.api_5xx_rate(),
            threshold=server_error_rate_percent / 100,
            evaluation=SUSTAINED_ABOVE,
            description=f"More than {server_error_rate_percent:g}% of API requests answered 5XX "
            f"in {RATE_DATAPOINTS_TO_ALARM} of {RATE_EVALUATION_PERIODS} minutes",
        )
        self.api_p99_latency = self._build_alarm(
            "ApiP99Latency",
            metrics.api_latency("p99"),
            threshold=p99_latency_ms,
            evaluation=SUSTAINED_ABOVE,
            description=f"API p99 latency above {p99_latency_ms} ms "
            f"in {RATE_DATAPOINTS_TO_ALARM} of {RATE_EVALUATION_PERIODS} minutes",
        )
        self.function_errors = self._build_alarm(
            "FunctionErrors",
            metrics.alias_metric("Errors", "Sum", "function errors"),
            threshold=function_errors,
            evaluation=REACHED_IN_A_MINUTE,
            description=f"{function_errors} or more invocations of the live alias failed in a minute "
            "(crash, timeout, out of memory: the handler itself answers every request)",
        )
        self.throttles = self._build_alarm(
            "Throttles",
            metrics.alias_metric("Throttles", "Sum", "throttles"),
            threshold=throttles,
            evaluation=REACHED_IN_A_MINUTE,
            description=f"{throttles} or more invocations of the live alias throttled in a minute "
            "(concurrency limit reached)",
        )
        self.model_load_failures = self._build_alarm(
            "ModelLoadFailures",
            metrics.handler_metric(Metric.MODEL_LOAD_FAILURES, "Sum", "model load failures"),
            threshold=model_load_failures,
            evaluation=REACHED_IN_A_MINUTE,
            description=f"{model_load_failures} or more model load attempts failed in a minute "
            "(missing or corrupt artifact, wrong architecture, no access to the bucket)",
        )
        # Paging: the whole service, whichever version fails.
        self.all_alarms: list[cloudwatch.Alarm] = [
            self.api_5xx_rate,
            self.api_p99_latency,
            self.function_errors,
            self.throttles,
            self.model_load_failures,
        ]
        # Rolling back: the version being deployed only (no latency, no throttles: a rollback
        # would not cure either).
        self.rollback_alarms: list[cloudwatch.Alarm] = self._build_rollback_alarms(
            metrics,
            server_error_rate_percent=server_error_rate_percent,
            function_errors=function_errors,
            model_load_failures=model_load_failures,
        )
        self.topic: sns.Topic | None = None
        if alarm_email:
            self.topic = self._build_topic(alarm_email)
            action = cloudwatch_actions.SnsAction(self.topic)
            for alarm in self.all_alarms:
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)

    def _build_rollback_alarms(
        self,
        metrics: InferenceMetrics,
        *,
        server_error_rate_percent: float,
        function_errors: int,
        model_load_failures: int,
    ) -> list[cloudwatch.Alarm]:
        return [
            self._build_alarm(
                "DeployedVersion5xxRate",
                metrics.deployed_version_5xx_rate(),
                threshold=server_error_rate_percent / 100,
                evaluation=SUSTAINED_ABOVE,
                description=f"The version being deployed answered more than "
                f"{server_error_rate_percent:g}% of its requests 5xx in {RATE_DATAPOINTS_TO_ALARM} of "
                f"{RATE_EVALUATION_PERIODS} minutes (minutes with {ROLLBACK_MIN_REQUESTS_PER_MINUTE} "
                "requests or more); rolls a deployment back",
            ),
            self._build_alarm(
                "DeployedVersionErrors",
                metrics.deployed_version_metric("Errors", "Sum", "deployed version's errors"),
                threshold=function_errors,
                evaluation=REACHED_IN_A_MINUTE,
                description=f"{function_errors} or more invocations of the version being deployed failed "
                "in a minute (crash, timeout, out of memory); rolls a deployment back",
            ),
            self._build_alarm(
                "DeployedVersionModelLoadFailures",
                metrics.deployed_version_handler_metric(
                    Metric.MODEL_LOAD_FAILURES, "Sum", "deployed version's model load failures"
                ),
                threshold=model_load_failures,
                evaluation=REACHED_IN_A_MINUTE,
                description=f"{model_load_failures} or more model loads of the version being deployed "
                "failed in a minute; rolls a deployment back",
            ),
        ]

    def _build_alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        evaluation: AlarmEvaluation,
        description: str,
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self._name_prefix}-{construct_id}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=evaluation.comparison,
            evaluation_periods=evaluation.evaluation_periods,
            datapoints_to_alarm=evaluation.datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _build_topic(self, email: str) -> sns.Topic:
        # CloudWatch cannot publish to a topic encrypted with the AWS managed key (alias/aws/sns):
        # the topic needs a customer managed key whose policy lets CloudWatch use it.
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the alarm notifications topic of the inference stack",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(KEY_DELETION_WINDOW_DAYS),
        )
        cloudwatch_principal = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        key.grant(cloudwatch_principal, "kms:Decrypt", "kms:GenerateDataKey*")
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Image classifier alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # The topic policy above replaces SNS's default one: allow this account's alarms explicitly.
        stack = Stack.of(self)
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowThisAccountsAlarms",
                actions=["sns:Publish"],
                principals=[cloudwatch_principal],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name=f"{self._name_prefix}-*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic


class InferenceDashboard(Construct):
    """A CloudWatch dashboard: traffic, latency, errors, capacity, cold starts (or SnapStart restores)
    and who serves what."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        metrics: InferenceMetrics,
        alarms: Sequence[cloudwatch.IAlarm],
        function_log_group: logs.ILogGroup,
        provisioned_concurrency: bool,
        snap_start: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=Stack.of(self).stack_name,
            default_interval=Duration.hours(3),
        )
        log_groups = [function_log_group.log_group_name]
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24)
        )
        self.dashboard.add_widgets(self._build_requests(metrics), self._build_latency(metrics))
        self.dashboard.add_widgets(
            self._build_errors(metrics),
            self._build_throttles(metrics),
            self._build_concurrency(metrics, provisioned_concurrency),
        )
        self.dashboard.add_widgets(self._build_cold_starts(log_groups), self._build_model_loads(metrics))
        if snap_start:
            self.dashboard.add_widgets(
                self._build_restores(metrics), self._build_restore_durations(log_groups)
            )
        self.dashboard.add_widgets(
            self._build_versions(metrics),
            self._build_model_versions_served(log_groups),
        )

    def _build_requests(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Requests",
            left=[
                metrics.api_metric("Count", "Sum", "API requests"),
                metrics.alias_metric("Invocations", "Sum", "function invocations"),
            ],
            width=12,
        )

    def _build_latency(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Latency (ms)",
            left=[metrics.api_latency(statistic) for statistic in ("p50", "p90", "p99")]
            + [
                metrics.api_metric("IntegrationLatency", "p99", "integration latency p99"),
                metrics.alias_metric("Duration", "p99", "function duration p99"),
                metrics.handler_metric(Metric.LATENCY, "p99", "handler latency p99"),
            ],
            left_y_axis=cloudwatch.YAxisProps(min=0, label="ms", show_units=False),
            width=12,
        )

    def _build_errors(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Errors",
            left=[
                metrics.api_metric("4XXError", "Sum", "API 4XX"),
                metrics.api_metric("5XXError", "Sum", "API 5XX"),
                metrics.alias_metric("Errors", "Sum", "function errors"),
                metrics.handler_metric(Metric.SERVER_ERRORS, "Sum", "handler 5xx answers"),
            ],
            width=8,
        )

    def _build_throttles(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Throttles",
            left=[metrics.alias_metric("Throttles", "Sum", "throttled invocations")],
            width=8,
        )

    def _build_concurrency(
        self, metrics: InferenceMetrics, provisioned_concurrency: bool
    ) -> cloudwatch.GraphWidget:
        right: list[cloudwatch.IMetric] = []
        if provisioned_concurrency:
            right = [
                metrics.alias_metric(
                    "ProvisionedConcurrencyUtilization", "Maximum", "provisioned utilization"
                ),
                metrics.alias_metric("ProvisionedConcurrencySpilloverInvocations", "Sum", "spillover (cold)"),
            ]
        return cloudwatch.GraphWidget(
            title="Concurrency",
            left=[metrics.concurrent_executions()],
            right=right,
            width=8,
        )

    def _build_cold_starts(self, log_groups: list[str]) -> cloudwatch.LogQueryWidget:
        # Lambda's REPORT line carries @initDuration only for the first invocation of an environment.
        return cloudwatch.LogQueryWidget(
            title="Cold starts and init duration (ms)",
            log_group_names=log_groups,
            query_lines=[
                'filter @type = "REPORT"',
                "stats count(@initDuration) as cold_starts, avg(@initDuration) as avg_init_ms, "
                f"max(@initDuration) as max_init_ms by bin({DASHBOARD_LOG_BIN})",
            ],
            view=cloudwatch.LogQueryVisualizationType.LINE,
            width=12,
        )

    def _build_restores(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        # The after-restore hooks count each restore and time themselves (lambda_src/snapstart.py).
        return cloudwatch.GraphWidget(
            title="SnapStart restores",
            left=[metrics.handler_metric(Metric.RESTORES, "Sum", "restores")],
            right=[
                metrics.handler_metric(Metric.RESTORE_DURATION, "Average", "after-restore hooks avg (ms)"),
                metrics.handler_metric(Metric.RESTORE_DURATION, "Maximum", "after-restore hooks max (ms)"),
            ],
            width=12,
        )

    def _build_restore_durations(self, log_groups: list[str]) -> cloudwatch.LogQueryWidget:
        # Lambda's REPORT line of a restored environment's first invocation: the whole restore.
        return cloudwatch.LogQueryWidget(
            title="Restore duration (ms), Lambda's REPORT",
            log_group_names=log_groups,
            query_lines=[
                'filter @type = "REPORT"',
                r"parse @message /Restore Duration: (?<restore_ms>[\d.]+) ms/",
                "filter ispresent(restore_ms)",
                "stats count(*) as restores, avg(restore_ms) as avg_restore_ms, "
                f"max(restore_ms) as max_restore_ms by bin({DASHBOARD_LOG_BIN})",
            ],
            view=cloudwatch.LogQueryVisualizationType.LINE,
            width=12,
        )

    def _build_model_loads(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Model loads",
            left=[
                metrics.handler_metric(Metric.MODEL_LOAD_DURATION, "Average", "load duration avg (ms)"),
                metrics.handler_metric(Metric.MODEL_LOAD_DURATION, "Maximum", "load duration max (ms)"),
            ],
            right=[metrics.handler_metric(Metric.MODEL_LOAD_FAILURES, "Sum", "load failures")],
            width=12,
        )

    def _build_versions(self, metrics: InferenceMetrics) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Invocations by function version (rollouts)",
            left=[metrics.invocations_by_function_version()],
            width=12,
        )

    def _build_model_versions_served(self, log_groups: list[str]) -> cloudwatch.LogQueryWidget:
        # The handler logs the served model with every request; the log stream names the function version.
        return cloudwatch.LogQueryWidget(
            title="Model version served, by function version",
            log_group_names=log_groups,
            query_lines=[
                'filter message = "request" and ispresent(model_version)',
                r"parse @logStream /\[(?<function_version>[^\]]+)\]/",
                "stats count(*) as requests, max(@timestamp) as last_seen by function_version, "
                "model_name, model_version",
                "sort last_seen desc",
            ],
            view=cloudwatch.LogQueryVisualizationType.TABLE,
            width=12,
        )
