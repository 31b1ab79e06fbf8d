"""The schedule and the reconciler Lambda that finds what lost events left behind.

Every ``reconcileEveryMinutes`` it reads the active items unchanged for ``reconcileStaleAfterSeconds`` from the
stale index, asks ECS about their tasks, applies what it learns, and writes the control-plane heartbeat.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from ecs_event_executor.control import environment as env_vars

from infra.python_function import METRICS_NAMESPACE, PythonFunction, log_retention
from infra.settings import Settings

# A pass reads stale items page by page and describes them 100 at a time until none is left or its time is up
# (the handler keeps a margin before the timeout); the next pass goes on from the least recently checked. The
# timeout stays within the period too, so a slow pass ends before the next one starts.
MAX_TIMEOUT_SECONDS = 300
# One pass at a time: two passes would check and re-stamp the same items twice.
RESERVED_CONCURRENCY = 1
# The handler's Powertools ``service`` (a metric dimension) and the metrics it emits once per pass.
METRICS_SERVICE = "reconciler"
LOST_METRIC = "ReconciledLost"  # tasks whose events were lost and that ECS no longer knows: ended FAILED
METRICS = ("ReconciledChecked", "ReconciledUpdated", LOST_METRIC, "ReconciledRelaunched")


class ReconcilerFunction(Construct):
    """Deploy ``lambdas/reconciler`` (the ``control.reconciling`` service) on a schedule, one pass at a time.

    The schedule is a rule on the default bus; the construct exposes the service's metrics.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.period = Duration.minutes(settings.reconcile_every_minutes)
        self.handler = PythonFunction(
            self,
            "Handler",
            handler="reconciler",
            function_name=f"{settings.name_prefix}-reconciler",
            description="Checks stale active launches against ECS and writes the heartbeat (Airflow ECS event executor)",
            layer=layer,
            timeout=Duration.seconds(min(MAX_TIMEOUT_SECONDS, int(self.period.to_seconds()))),
            log_retention=log_retention(settings.log_retention_days),
            reserved_concurrency=RESERVED_CONCURRENCY,
            environment={
                **environment,
                env_vars.STALE_AFTER_SECONDS: str(settings.reconcile_stale_after_seconds),
            },
        )
        self.function = self.handler.function
        # A failed or throttled pass is not retried: the next scheduled pass does the same work, and the errors
        # alarm reports the failure.
        self.function.configure_async_invoke(retry_attempts=0, max_event_age=self.period)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Runs the Airflow ECS event executor's reconciler",
            schedule=events.Schedule.rate(self.period),
            targets=[targets.LambdaFunction(self.function, retry_attempts=2, max_event_age=self.period)],
        )

    def metric(self, name: str) -> cloudwatch.Metric:
        """Return one of the per-pass metrics (``METRICS``), summed over the schedule's period."""
        if name not in METRICS:
            raise ValueError(f"the reconciler emits {', '.join(METRICS)}, not {name!r}")
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": METRICS_SERVICE},
            statistic="Sum",
            period=self.period,
        )
