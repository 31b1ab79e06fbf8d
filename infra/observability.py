"""Alarms, their notification topic and a dashboard for the control plane."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.settings import Settings

PERIOD = Duration.minutes(1)
# A launch waiting longer than this is being throttled or the launcher is failing; half the retry horizon at most.
OLDEST_LAUNCH_AGE_SECONDS = 900
# An ECS event normally reaches the status function well under a second after it happened; one older than this
# is being retried by Lambda (the function fails or is throttled): Airflow hears of finished tasks late.
OLDEST_STATUS_EVENT_AGE_SECONDS = 300


class Monitoring(Construct):
    """SNS topic (KMS-encrypted, TLS-only; or an existing one) for alarms, the alarms, and a dashboard."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        launch_queue: sqs.IQueue,
        status_function: lambda_.IFunction,
        dead_letter_queues: Sequence[tuple[str, sqs.IQueue]],
        functions: Sequence[tuple[str, lambda_.IFunction]],
        lost_tasks: cloudwatch.IMetric,
        reconciler_metrics: Sequence[cloudwatch.IMetric],
    ) -> None:
        super().__init__(scope, id_)
        self.topic = self._topic(settings)
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(
            name: str, metric: cloudwatch.IMetric, threshold: float, description: str
        ) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                name,
                alarm_name=f"{settings.name_prefix}-{name}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            self.alarms.append(created)
            return created

        for label, queue in dead_letter_queues:
            alarm(
                f"{label}-dlq-not-empty",
                queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                0,
                f"Messages in the {label} dead-letter queue: `ecs-event-executor replay-dlq --dry-run` lists them "
                "(with the reason where one was recorded); fix the cause, then replay or drop them.",
            )
        for label, function in functions:
            alarm(
                f"{label}-errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                0,
                f"The {label} Lambda failed (see its log group). Launch messages and ECS events are retried; a "
                "failed reconciler pass is repeated by the next one.",
            )
        oldest = min(OLDEST_LAUNCH_AGE_SECONDS, settings.retry_horizon_seconds // 2)
        alarm(
            "launch-queue-oldest-message",
            launch_queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            oldest,
            f"A launch request has waited more than {oldest} s: RunTask is throttled or capacity is short.",
        )
        alarm(
            "status-event-age",
            # Lambda's AsyncEventAge (ms): how long an asynchronously invoked event waited before this attempt.
            status_function.metric("AsyncEventAge", period=PERIOD, statistic="Maximum"),
            OLDEST_STATUS_EVENT_AGE_SECONDS * 1000,
            f"An ECS event waited more than {OLDEST_STATUS_EVENT_AGE_SECONDS} s before the status Lambda ran it: "
            "the function is failing or throttled (its errors, its EventsFailed metric), so Airflow hears of task "
            "states late; after Lambda's 2 retries an event moves to the status-failed-events queue, which the "
            "reconciler replays.",
        )
        alarm(
            "reconciler-lost-tasks",
            lost_tasks,
            0,
            "The reconciler ended tasks FAILED whose state-change events were lost and that ECS no longer knows: "
            "check the ECS-events DLQ and the status Lambda's errors; the affected tasks' reason says so.",
        )

        # Dashboard names are unique per account across regions: the region keeps two deployments apart.
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{settings.name_prefix}-control-plane-{Aws.REGION}"
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Launch queue",
                left=[
                    launch_queue.metric_number_of_messages_sent(period=PERIOD, statistic="Sum"),
                    launch_queue.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum"
                    ),
                ],
                right=[
                    launch_queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="ECS events (status Lambda, asynchronous)",
                left=[
                    status_function.metric("AsyncEventsReceived", period=PERIOD, statistic="Sum"),
                    status_function.metric("AsyncEventsDropped", period=PERIOD, statistic="Sum"),
                ],
                right=[status_function.metric("AsyncEventAge", period=PERIOD, statistic="Maximum")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queues",
                left=[
                    q.metric_approximate_number_of_messages_visible(
                        period=PERIOD, statistic="Maximum", label=label
                    )
                    for label, q in dead_letter_queues
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            *[
                cloudwatch.GraphWidget(
                    title=f"{label} Lambda",
                    left=[
                        function.metric_invocations(period=PERIOD, statistic="Sum"),
                        function.metric_errors(period=PERIOD, statistic="Sum"),
                        function.metric_throttles(period=PERIOD, statistic="Sum"),
                    ],
                    right=[function.metric_duration(period=PERIOD, statistic="p99")],
                    width=12,
                )
                for label, function in functions
            ],
            cloudwatch.GraphWidget(title="Reconciler passes", left=list(reconciler_metrics), width=12),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24)
        )

    def _topic(self, settings: Settings) -> sns.ITopic:
        if settings.alarm_topic_arn:
            return sns.Topic.from_topic_arn(self, "Topic", settings.alarm_topic_arn)
        # CloudWatch can publish to an encrypted topic only with a customer-managed key that allows it.
        key = kms.Key(
            self,
            "TopicKey",
            description=f"{settings.name_prefix}: encrypts the control plane's alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,  # only alarm notifications in flight are encrypted with it
            pending_window=Duration.days(7),
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{settings.name_prefix} control-plane alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if settings.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        return topic
