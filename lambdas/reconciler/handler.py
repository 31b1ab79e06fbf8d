"""Reconciler Lambda (scheduled): check stale active launches against ECS and write the heartbeat."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings

logger = Logger(service="ecs-event-reconciler")
metrics = Metrics(
    namespace=os.environ.get(env_vars.POWERTOOLS_METRICS_NAMESPACE, env_vars.DEFAULT_METRICS_NAMESPACE),
    service="reconciler",
)

_reconciler: Reconciler | None = None
# Time kept back from the function's timeout: the page in flight, the heartbeat and the metrics still finish.
SAFETY_MARGIN_SECONDS = 20.0


def reconciler() -> Reconciler:
    """Return the reconciler, reading and validating the environment on first use."""
    global _reconciler
    if _reconciler is None:
        _reconciler = Reconciler(ReconcilerSettings.from_env())
    return _reconciler


def reset() -> None:
    """Forget cached settings and clients (tests and the local runner change the environment)."""
    global _reconciler
    _reconciler = None


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    budget = max(1.0, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS)
    report = reconciler().run(time_budget_seconds=budget).as_dict()
    for name in ("checked", "updated", "lost", "relaunched"):
        metrics.add_metric(name=f"Reconciled{name.capitalize()}", unit=MetricUnit.Count, value=report[name])
    return report
