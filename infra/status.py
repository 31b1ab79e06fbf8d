"""The ECS event rule and the status Lambda that moves task items along ECS's lifecycle."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from ecs_event_executor.control.ecs_state import STARTED_BY, STATUS_EVENT_LAST_STATUSES

from infra import nag
from infra.python_function import PythonFunction, log_retention
from infra.queues import DEAD_LETTER_RETENTION, secure_queue
from infra.settings import Settings

STATUS_TIMEOUT = Duration.seconds(30)
# EventBridge retries a failed delivery (throttled or failing Lambda) with backoff for this long, then sends the
# event to the target's dead-letter queue. Task events are applied in detail.version order, so a late one is safe.
MAX_EVENT_AGE = Duration.hours(6)
RETRY_ATTEMPTS = 185
# One conditional write per event, mostly waiting on DynamoDB: 256 MB (a seventh of a vCPU) keeps its warm CPU
# per event low and costs less per event than 512 MB (measured by `make bench`; see docs/bench.md).
MEMORY_MB = 256


def ecs_task_events(cluster_arn: str) -> events.EventPattern:
    """Return the pattern of "ECS Task State Change" events of this cluster's tasks that this control plane started,
    at the steps that can change a task item (RUNNING, DEPROVISIONING, STOPPED): each delivery is an invocation."""
    return events.EventPattern(
        source=["aws.ecs"],
        detail_type=["ECS Task State Change"],
        detail={
            "clusterArn": [cluster_arn],
            "startedBy": [STARTED_BY],
            "lastStatus": list(STATUS_EVENT_LAST_STATUSES),
        },
    )


class StatusFunction(Construct):
    """Deploy ``lambdas/status`` (the ``control.status_tracking`` service) behind the ECS task-state rule.

    The rule is on the default bus; its target has retries and a dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        layer: lambda_.ILayerVersion,
        cluster_arn: str,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.dead_letter_queue = secure_queue(self, "DeadLetterQueue", retention_period=DEAD_LETTER_RETENTION)
        nag.acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This is the dead-letter queue of the ECS event rule's target (events EventBridge could not deliver); "
            "its depth raises an alarm.",
        )
        self.handler = PythonFunction(
            self,
            "Handler",
            handler="status",
            function_name=f"{settings.name_prefix}-status",
            description="Applies ECS task state changes to the tasks table (Airflow ECS event executor)",
            layer=layer,
            timeout=STATUS_TIMEOUT,
            memory_size=MEMORY_MB,
            log_retention=log_retention(settings.log_retention_days),
            reserved_concurrency=settings.status_reserved_concurrency,
            environment=environment,
        )
        self.function = self.handler.function
        self.rule = events.Rule(
            self,
            "EcsTaskStateRule",
            description="ECS task state changes of tasks the Airflow ECS event executor started on its cluster",
            event_pattern=ecs_task_events(cluster_arn),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                    dead_letter_queue=self.dead_letter_queue,
                )
            ],
        )
