"""Launcher Lambda: SQS launch-queue batches in, one ECS task per launch out (partial batch responses)."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from ecs_event_executor.control.launching import Launcher, LauncherSettings, RetryLater
from ecs_event_executor.control.messages import MalformedMessage

logger = Logger(service="ecs-event-launcher")
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "AirflowEcsEventExecutor"), service="launcher"
)
# Report every failed record (even a wholly failed batch) as a batch item failure; never fail the invocation.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_launcher: Launcher | None = None
_sqs: Any = None


def launcher() -> Launcher:
    """Return the launcher, reading and validating the environment on first use (a bad setting fails loudly)."""
    global _launcher
    if _launcher is None:
        _launcher = Launcher(LauncherSettings.from_env())
    return _launcher


def sqs() -> Any:
    global _sqs
    if _sqs is None:
        _sqs = boto3.client("sqs")
    return _sqs


def reset() -> None:
    """Forget cached settings and clients (tests and the local runner change the environment)."""
    global _launcher, _sqs
    _launcher = None
    _sqs = None


def _queue_url(record: SQSRecord) -> str:
    configured = os.environ.get("LAUNCH_QUEUE_URL")
    if configured:
        return configured
    return sqs().get_queue_url(QueueName=record.event_source_arn.rsplit(":", 1)[-1])["QueueUrl"]


def record_handler(record: SQSRecord) -> None:
    """Apply one message; poison goes to the DLQ with its reason, throttled launches come back later."""
    receive_count = int(record.attributes.approximate_receive_count or 1)
    try:
        result = launcher().handle(record.body, receive_count=receive_count)
    except MalformedMessage as exc:
        metrics.add_metric(name="MalformedMessages", unit=MetricUnit.Count, value=1)
        dead_letter_queue = os.environ.get("DEAD_LETTER_QUEUE_URL")
        logger.error("malformed launch message", extra={"reason": str(exc), "message_id": record.message_id})
        if not dead_letter_queue:
            raise
        sqs().send_message(
            QueueUrl=dead_letter_queue,
            MessageBody=record.body,
            MessageAttributes={
                "FailureReason": {"DataType": "String", "StringValue": str(exc)[:1000] or "malformed"},
                "SourceMessageId": {"DataType": "String", "StringValue": record.message_id},
            },
        )
        return
    except RetryLater as exc:
        metrics.add_metric(name="LaunchRetries", unit=MetricUnit.Count, value=1)
        logger.info(
            "launch retried later",
            extra={"reason": exc.reason, "delay": exc.delay_seconds, "message_id": record.message_id},
        )
        sqs().change_message_visibility(
            QueueUrl=_queue_url(record),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=exc.delay_seconds,
        )
        raise
    metrics.add_metric(name=result.value, unit=MetricUnit.Count, value=1)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
