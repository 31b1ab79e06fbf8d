"""Status Lambda: one ECS "Task State Change" event in (the rule invokes it asynchronously), a conditional write out.

Each invocation is one event, so one bad event never fails another. An event whose write fails (throttling past
botocore's retries, a failed relaunch publish, a bug, a timeout) raises: Lambda retries it twice, then sends its
record of the invocation (the event and the error) to the function's on-failure destination, the failed-events
queue, which the reconciler replays on each pass (``control.failed_events``). A malformed event cannot become
valid by retrying: it is acknowledged and counted (``EventsMalformed``), with its reason in the log.

Log ingestion is billed per byte: a routine event prints nothing at INFO (what it did is on its task item, and
at DEBUG in the log); a failure logs a WARNING, and only the metrics operators alarm on are emitted (EMF).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.health import HealthNotes
from ecs_event_executor.control.status_tracking import StatusResult, StatusSettings, StatusTracker

logger = Logger(service="ecs-event-status")
metrics = Metrics(
    namespace=os.environ.get(env_vars.POWERTOOLS_METRICS_NAMESPACE, env_vars.DEFAULT_METRICS_NAMESPACE),
    service="status",
)
# The results worth a metric: what an operator alarms on or investigates. The routine ones (applied, finished,
# stale, skipped, not ours) are Lambda's own Invocations; an EMF line for each would cost more log bytes than
# the event's write (docs/bench.md).
ALARMED_RESULTS = frozenset({StatusResult.MALFORMED, StatusResult.UNKNOWN_TASK, StatusResult.RELAUNCHED})

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
    """Apply one ECS event and count what operators watch; raise on a failure worth retrying."""
    try:
        result = tracker().handle(event)
    except Exception as exc:
        metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=1)
        logger.warning(
            "ECS event failed; Lambda retries it, then the reconciler replays it",
            extra={
                "error": f"{type(exc).__name__}: {exc}",
                "event_id": event.get("id") if isinstance(event, dict) else None,
            },
        )
        raise
    if result in ALARMED_RESULTS:
        metrics.add_metric(name=f"Events{result.value}", unit=MetricUnit.Count, value=1)
    return result


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext | Any) -> dict[str, str]:
    try:
        return {"result": apply(event).value}
    finally:
        # Only when there is something to say: Powertools' log_metrics would warn on every routine event.
        if metrics.metric_set:
            metrics.flush_metrics()
