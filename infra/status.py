"""The ECS event rule, the status Lambda that moves task items along ECS's lifecycle, and its failed-events queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jsii
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from ecs_event_executor.control.ecs_state import STARTED_BY, status_event_filter

from infra.python_function import PythonFunction, log_retention
from infra.queues import dead_letter_queue, grant_send
from infra.settings import Settings

STATUS_TIMEOUT = Duration.seconds(30)
# The rule invokes the status function asynchronously, one event per invocation (no queue: an event is one Lambda
# request, not a SendMessage, a share of a ReceiveMessage and of a DeleteMessageBatch). Two layers of retries:
# - delivery (EventBridge -> Lambda: throttled by the API, the function missing or not permitted): EventBridge
#   retries for MAX_EVENT_AGE, then puts the event on the target DLQ (alarmed; ``replay-dlq`` after the fix);
# - the function failed (a throttled table, a timeout, a bug): Lambda retries ASYNC_RETRY_ATTEMPTS times, then
#   sends its record of the invocation (the event and the error) to the on-failure destination, a queue the
#   reconciler replays on each pass (control/failed_events.py). Throttled invocations (reserved concurrency)
#   are retried by Lambda for up to MAX_EVENT_AGE and end in the same queue. Nothing is discarded.
MAX_EVENT_AGE = Duration.hours(6)
RETRY_ATTEMPTS = 185
ASYNC_RETRY_ATTEMPTS = 2
# One conditional write per event, mostly waiting on DynamoDB: 256 MB (a seventh of a vCPU) keeps its warm CPU
# per event low and costs less per event than 512 MB (measured by `make bench`; see docs/bench.md).
MEMORY_MB = 256


def ecs_task_events(cluster_arns: Sequence[str]) -> events.EventPattern:
    """Return the pattern of "ECS Task State Change" events of the clusters' tasks that this control plane started,
    at the steps that can end a task item (``ecs_state.status_event_filter``): each match is one invocation."""
    return events.EventPattern(
        source=["aws.ecs"],
        detail_type=["ECS Task State Change"],
        detail={"clusterArn": list(cluster_arns), "startedBy": [STARTED_BY], **status_event_filter()},
    )


@jsii.implements(lambda_.IDestination)
class QueueDestination:
    """An SQS on-failure destination granted only what Lambda needs to send to it (SendMessage, and the key's
    GenerateDataKey and Decrypt): CDK's ``SqsDestination`` also grants the queue's attribute reads and the key's
    wildcard ``GenerateDataKey*`` and ``ReEncrypt*``."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(
        self, _scope: Construct, fn: lambda_.IFunction, *, type: lambda_.DestinationType | None = None
    ) -> lambda_.DestinationConfig:
        grant_send(self.queue, fn)
        return lambda_.DestinationConfig(destination=self.queue.queue_arn)


class StatusFunction(Construct):
    """Deploy ``lambdas/status`` (the ``control.status_tracking`` service) behind the ECS task-state rule.

    ECS task-state rule (default bus) -> status Lambda (asynchronous invoke, one event each; target DLQ for
    delivery failures) -> on a function error, Lambda's two retries -> the failed-events queue (the on-failure
    destination), replayed by the reconciler.
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
        # ECS events carry the container overrides, so the workload command and its token: the stack's key
        # encrypts both queues if set.
        self.dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            encryption_key=encryption_key,
            holds="This is the ECS rule's target dead-letter queue (ECS events EventBridge could not deliver to the "
            "status function for 6 hours); its depth raises an alarm and `replay-dlq` applies them.",
        )
        self.failed_events_queue = dead_letter_queue(
            self,
            "FailedEventsQueue",
            encryption_key=encryption_key,
            holds="This is the status function's on-failure destination (ECS events whose invocation failed after "
            "Lambda's retries), itself a dead-letter store: the reconciler replays it on each pass and its "
            "depth raises an alarm.",
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
        # Lambda sends its record of a failed invocation with the function's role: SendMessage on the queue.
        self.function.configure_async_invoke(
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
            on_failure=QueueDestination(self.failed_events_queue),
        )
        # The target adds the function's resource policy (only EventBridge, for this rule) and the DLQ's policy.
        self.rule = events.Rule(
            self,
            "EcsTaskStateRule",
            description="ECS task state changes of tasks the Airflow ECS event executor started on its cluster",
            event_pattern=ecs_task_events(cluster_arns),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                    dead_letter_queue=self.dead_letter_queue,
                )
            ],
        )
