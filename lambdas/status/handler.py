"""Status Lambda: ECS "Task State Change" events in, one conditional task-item write out."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.status_tracking import StatusSettings, StatusTracker

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
        _tracker = StatusTracker(StatusSettings.from_env())
    return _tracker


def reset() -> None:
    """Forget cached settings and clients (tests and the local runner change the environment)."""
    global _tracker
    _tracker = None


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    result = tracker().handle(event)
    metrics.add_metric(name=f"Events{result.value}", unit=MetricUnit.Count, value=1)
    return {"result": result.value}
