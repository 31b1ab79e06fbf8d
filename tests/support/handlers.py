"""Drive the real handlers the way AWS does: a launch through the launcher, an ECS event into the status Lambda."""

from __future__ import annotations

import json
from typing import Any

from ecs_event_executor.control.status_tracking import StatusResult
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import REGION, LambdaContextStub, body_event
from tests.support.requests import launch_request


def launch(cp: ControlPlane, **fields: Any) -> tuple[str, dict[str, Any]]:
    """Launch one request through the launcher handler; return its launch id and the ECS task it started."""
    request = launch_request(**fields)
    launcher_handler.handler(body_event([request.to_json()], cp.queue_arn), LambdaContextStub())
    stored = TaskTable(cp.table).get(request.launch_id)
    assert stored is not None and stored.task_arn
    task = cp.client("ecs").describe_tasks(cluster=cp.ecs.cluster, tasks=[stored.task_arn])["tasks"][0]
    return request.launch_id, task


STATUS_QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:airflow-status"


def status_batch(events: list[Any], receive_count: int = 1) -> dict[str, Any]:
    """Return the SQS batch the status queue's event source hands the function for ``events`` (the rule's bodies)."""
    return body_event([json.dumps(e) for e in events], STATUS_QUEUE_ARN, receive_count=receive_count)


def deliver(events: list[Any]) -> list[str]:
    """Deliver ECS events to the status handler as one SQS batch; return the message ids it reported failed."""
    response = status_handler.handler(status_batch(events), LambdaContextStub())
    return [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]


def send(event: Any) -> str:
    """Deliver one ECS event to the status handler in an SQS batch; return what it did (Applied, Skipped, ...)."""
    tracker = status_handler.tracker()
    results: list[StatusResult] = []
    original = tracker.handle

    def recorded(e: Any) -> StatusResult:
        results.append(original(e))
        return results[-1]

    tracker.handle = recorded  # type: ignore[method-assign,assignment]
    try:
        assert deliver([event]) == []
    finally:
        del tracker.handle
    [result] = results
    return result.value
