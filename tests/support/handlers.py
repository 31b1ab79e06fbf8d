"""Drive the real handlers the way AWS does: a launch through the launcher, an ECS event into the status Lambda."""

from __future__ import annotations

from typing import Any

from ecs_event_executor.control.status_tracking import StatusResult
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import LambdaContextStub, body_event
from tests.support.requests import launch_request


def launch(cp: ControlPlane, **fields: Any) -> tuple[str, dict[str, Any]]:
    """Launch one request through the launcher handler; return its launch id and the ECS task it started."""
    request = launch_request(**fields)
    launcher_handler.handler(body_event([request.to_json()], cp.queue_arn), LambdaContextStub())
    stored = TaskTable(cp.table).get(request.launch_id)
    assert stored is not None and stored.task_arn
    task = cp.client("ecs").describe_tasks(cluster=cp.ecs.cluster, tasks=[stored.task_arn])["tasks"][0]
    return request.launch_id, task


def invoke_status(event: Any) -> dict[str, Any]:
    """Invoke the status handler with one event, as the ECS rule's asynchronous invoke does."""
    result: dict[str, Any] = status_handler.handler(event, LambdaContextStub())
    return result


def deliver(events: list[Any]) -> list[int]:
    """Deliver ECS events to the status handler, one invocation each; return the indices of those that raised
    (Lambda would retry them, then send them to the failed-events queue)."""
    failed = []
    for i, event in enumerate(events):
        try:
            invoke_status(event)
        except Exception:
            failed.append(i)
    return failed


def send(event: Any) -> str:
    """Deliver one ECS event to the status handler; return what it did (Applied, Skipped, ...)."""
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
