"""Launcher Lambda: SQS launch-queue batches in, one ECS task per launch out (partial batch responses).

The batch's messages are applied concurrently by the launcher; each failed one (even a wholly failed batch) is
reported as a batch item failure, and the invocation itself never fails.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.aws_clients import lambda_client
from ecs_event_executor.control.health import HealthNotes
from ecs_event_executor.control.launching import (
    RECYCLE_AFTER_RECEIVES,
    Launcher,
    LauncherSettings,
    Outcome,
    Result,
    RetryLater,
)
from ecs_event_executor.control.messages import MalformedMessage
from ecs_event_executor.control.sqs_batch import PartialBatchResponse, SqsRecord, records, response

logger = Logger(service="ecs-event-launcher")
metrics = Metrics(
    namespace=os.environ.get(env_vars.POWERTOOLS_METRICS_NAMESPACE, env_vars.DEFAULT_METRICS_NAMESPACE),
    service="launcher",
)
_launcher: Launcher | None = None
_sqs: Any = None


def launcher() -> Launcher:
    """Return the launcher, reading and validating the environment on first use (a bad setting fails loudly)."""
    global _launcher
    if _launcher is None:
        _launcher = Launcher(LauncherSettings.from_env(), health=HealthNotes())
    return _launcher


def sqs() -> Any:
    global _sqs
    if _sqs is None:
        _sqs = lambda_client("sqs")
    return _sqs


def reset() -> None:
    """Forget cached settings and clients (tests and the local runner change the environment)."""
    global _launcher, _sqs
    _launcher = None
    _sqs = None


def _queue_url(record: SqsRecord) -> str:
    configured = os.environ.get(env_vars.LAUNCH_QUEUE_URL)
    if configured:
        return configured
    return sqs().get_queue_url(QueueName=record.event_source_arn.rsplit(":", 1)[-1])["QueueUrl"]


def _count(name: str) -> None:
    # Called after the batch's threads are done: metrics are only ever touched by the invocation's own thread.
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def settle(record: SqsRecord, outcome: Outcome) -> bool:
    """Finish one message after it was applied; return whether it is done (deleted from the queue).

    Poison goes to the DLQ with its reason; a launch to retry comes back after the delay it asked for.
    """
    if isinstance(outcome, Result):
        _count(outcome.value)
        return True
    if isinstance(outcome, MalformedMessage):
        _count("MalformedMessages")
        dead_letter_queue = os.environ.get(env_vars.DEAD_LETTER_QUEUE_URL)
        logger.error(
            "malformed launch message", extra={"reason": str(outcome), "message_id": record.message_id}
        )
        if not dead_letter_queue:
            return False
        sqs().send_message(
            QueueUrl=dead_letter_queue,
            MessageBody=record.body,
            MessageAttributes={
                "FailureReason": {"DataType": "String", "StringValue": str(outcome)[:1000] or "malformed"},
                "SourceMessageId": {"DataType": "String", "StringValue": record.message_id},
            },
        )
        return True
    if isinstance(outcome, RetryLater):
        _count("LaunchRetries")
        logger.info(
            "launch retried later",
            extra={"reason": outcome.reason, "delay": outcome.delay_seconds, "message_id": record.message_id},
        )
        receives = record.receive_count
        queue_url = _queue_url(record)
        if receives >= RECYCLE_AFTER_RECEIVES and not queue_url.endswith(".fifo"):
            # A fresh copy starts at receive count 0: a launch that waits out hours of throttling is retried
            # on its age and deadline, never redriven to the DLQ as if it were poison. Duplicates are harmless
            # (the launch lease and the client token), so the copy is sent before the original is deleted.
            _count("LaunchMessagesRecycled")
            sqs().send_message(
                QueueUrl=queue_url, MessageBody=record.body, DelaySeconds=min(900, outcome.delay_seconds)
            )
            return True
        sqs().change_message_visibility(
            QueueUrl=queue_url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=outcome.delay_seconds,
        )
        return False
    logger.error(
        "launch message failed; SQS delivers it again",
        extra={"error": f"{type(outcome).__name__}: {outcome}", "message_id": record.message_id},
    )
    return False


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    batch = records(event)
    outcomes = launcher().handle_many(
        [(r.body, r.receive_count) for r in batch],
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    failed: list[SqsRecord] = []
    # One INFO line per batch (what each launch did is on its task item, and at DEBUG in the log).
    summary = Counter(o.value if isinstance(o, Result) else type(o).__name__ for o in outcomes)
    for record, outcome in zip(batch, outcomes, strict=True):
        try:
            done = settle(record, outcome)
        except Exception as exc:
            # The DLQ or the visibility change failed: SQS delivers the message again.
            logger.error(
                "could not settle a launch message",
                extra={"error": f"{type(exc).__name__}: {exc}", "message_id": record.message_id},
            )
            done = False
        if not done:
            failed.append(record)
    logger.info(
        "launch batch", extra={"messages": len(batch), "handed_back": len(failed), "outcomes": summary}
    )
    return response(failed)
