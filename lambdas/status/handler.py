"""Status Lambda: batches of ECS "Task State Change" events from the status queue in, conditional writes out.

The ECS rule puts each event on an SQS queue; an event source mapping hands them here in batches with partial
batch responses. An event whose write fails (throttling past botocore's retries, a failed relaunch publish, a bug)
is reported as a batch item failure: SQS delivers it again after the visibility timeout and, after the queue's
maxReceiveCount receives, moves it to the dead-letter queue (alarmed; ``replay-dlq --to-queue`` after the fix).
It never fails its batch-mates. A malformed event cannot become valid by retrying: it is acknowledged and counted
(``EventsMalformed``), with its reason in the log.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.health import HealthNotes
from ecs_event_executor.control.sqs_batch import PartialBatchResponse, SqsRecord, process, records
from ecs_event_executor.control.status_tracking import StatusResult, StatusSettings, StatusTracker

logger = Logger(service="ecs-event-status")
metrics = Metrics(
    namespace=os.environ.get(env_vars.POWERTOOLS_METRICS_NAMESPACE, env_vars.DEFAULT_METRICS_NAMESPACE),
    service="status",
)

_tracker: StatusTracker | None = None


def tracker() -> StatusTracker:
    """Return the tracker, reading and validating the environment on first use."""
    global _tracker
    if _tracker is None:
        _tracker = StatusTracker(StatusSettings.from_env(), health=HealthNotes())
    return _tracker


def reset() -> None:
    """Forget cached settings and clients (tests and the local runner change the environment)."""
    global _tracker
    _tracker = None


def apply(event: Any) -> StatusResult:
    """Apply one ECS event and count what it did; raise on a failure worth retrying."""
    try:
        result = tracker().handle(event)
    except Exception:
        metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name=f"Events{result.value}", unit=MetricUnit.Count, value=1)
    return result


def apply_record(record: SqsRecord) -> str:
    """Apply the ECS event one SQS message carries (a body that is not JSON is malformed, like a bad event)."""
    try:
        event = json.loads(record.body)
    except ValueError:
        event = record.body
    try:
        return apply(event).value
    except Exception as exc:
        logger.warning(
            "ECS event failed; SQS delivers it again",
            extra={
                "error": f"{type(exc).__name__}: {exc}",
                "message_id": record.message_id,
                "receive_count": record.receive_count,
            },
        )
        raise


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse | dict[str, str]:
    if "Records" not in event and "detail-type" in event:
        # An event the rule invoked this function with directly, before the rule targeted the queue (Lambda's
        # asynchronous retries may deliver it after an upgrade): applied, and an error raised for a retry.
        return {"result": apply(event).value}
    batch = records(event)
    # One INFO line per batch (what each event did is on its task item, and at DEBUG in the log); a failed event
    # logs its own WARNING.
    summary: Counter[str] = Counter()
    try:
        # A failed event is handed back alone; a batch whose every event failed raises BatchFailed.
        return process(batch, lambda record: summary.update([apply_record(record)]))
    finally:
        logger.info(
            "status batch",
            extra={"events": len(batch), "failed": len(batch) - summary.total(), "results": summary},
        )
