"""The ECS event rule, the status queue and the status Lambda that moves task items along ECS's lifecycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from ecs_event_executor.control.ecs_state import STARTED_BY, STATUS_EVENT_LAST_STATUSES

from infra import nag
from infra.launcher import queue_visibility_timeout
from infra.python_function import PythonFunction, log_retention
from infra.queues import DEAD_LETTER_RETENTION, secure_queue
from infra.settings import Settings

STATUS_TIMEOUT = Duration.seconds(30)
# The rule puts each event on the status queue. A direct Lambda target would be an asynchronous invocation whose
# retries and dead-letter queue cover only delivering the event: a function error (throttled table, a timeout, a
# bug) would be retried twice and then discarded. Through the queue, a failed event comes back after the visibility
# timeout and, after MAX_RECEIVE_COUNT receives, waits in the dead-letter queue (alarmed) for ``replay-dlq``.
# EventBridge itself retries putting an event on the queue for this long, then sends it to the same DLQ.
MAX_EVENT_AGE = Duration.hours(6)
RETRY_ATTEMPTS = 185
# Latency matters (container exit -> Airflow state): no batching window. The pollers long-poll, so a lone event
# is handed over as soon as it arrives; under load a batch takes what is there, up to 10 events.
BATCH_SIZE = 10
MAX_BATCHING_WINDOW = Duration.seconds(0)
# Five receives at a 180 s visibility timeout: about 15 minutes of retries, longer than a throttling episode that
# botocore's own retries did not absorb, short enough that a persistent failure reaches the DLQ alarm well before
# the reconciler's verdict on the task. Events apply in detail.version order, so a late or replayed one is safe.
MAX_RECEIVE_COUNT = 5
# One conditional write per event, mostly waiting on DynamoDB: 256 MB (a seventh of a vCPU) keeps its warm CPU
# per event low and costs less per event than 512 MB (measured by `make bench`; see docs/bench.md).
MEMORY_MB = 256


def ecs_task_events(cluster_arns: Sequence[str]) -> events.EventPattern:
    """Return the pattern of "ECS Task State Change" events of the clusters' tasks that this control plane started,
    at the steps that can change a task item (RUNNING, STOPPING, STOPPED): each delivery is a queue message."""
    return events.EventPattern(
        source=["aws.ecs"],
        detail_type=["ECS Task State Change"],
        detail={
            "clusterArn": list(cluster_arns),
            "startedBy": [STARTED_BY],
            "lastStatus": list(STATUS_EVENT_LAST_STATUSES),
        },
    )


class StatusFunction(Construct):
    """Deploy ``lambdas/status`` (the ``control.status_tracking`` service) behind the ECS task-state rule.

    ECS task-state rule (default bus) -> status queue (redrive to a DLQ) -> status Lambda (partial batches).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        layer: lambda_.ILayerVersion,
        cluster_arns: Sequence[str],
        environment: Mapping[str, str],
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, id_)
        reserved = settings.status_reserved_concurrency
        # ECS events carry the container overrides, so the workload command and its token: the stack's key
        # encrypts both queues if set.
        self.dead_letter_queue = secure_queue(
            self, "DeadLetterQueue", retention_period=DEAD_LETTER_RETENTION, encryption_key=encryption_key
        )
        nag.acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This is the status queue's dead-letter queue (ECS events whose handling failed 5 times, or that "
            "EventBridge could not put on the queue); its depth raises an alarm.",
        )
        self.queue = secure_queue(
            self,
            "Queue",
            encryption_key=encryption_key,
            visibility_timeout=queue_visibility_timeout(STATUS_TIMEOUT, MAX_BATCHING_WINDOW),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
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
            reserved_concurrency=reserved,
            environment=environment,
        )
        self.function = self.handler.function
        self.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                max_batching_window=MAX_BATCHING_WINDOW,
                report_batch_item_failures=True,
                # With reserved concurrency, the pollers must not invoke more than it: a throttled invocation's
                # events would count receives towards the DLQ.
                max_concurrency=reserved,
            )
        )
        # The target adds the queue policy: only EventBridge, for this rule (aws:SourceArn), may send.
        self.rule = events.Rule(
            self,
            "EcsTaskStateRule",
            description="ECS task state changes of tasks the Airflow ECS event executor started on its cluster",
            event_pattern=ecs_task_events(cluster_arns),
            targets=[
                targets.SqsQueue(
                    self.queue,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                    dead_letter_queue=self.dead_letter_queue,
                )
            ],
        )
