"""Launch requests as the executor builds them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ecs_event_executor.control.messages import LaunchRequest, TaskKey, new_launch_id, utcnow


def launch_request(
    task_id: str = "t1",
    *,
    try_number: int = 1,
    owner: str = "default:test",
    deadline_in: float | None = 600,
    **fields: Any,
) -> LaunchRequest:
    key = TaskKey(dag_id="example", task_id=task_id, run_id="manual__2026-11-25", try_number=try_number)
    now = utcnow()
    return LaunchRequest(
        launch_id=new_launch_id(key),
        owner=owner,
        key=key,
        command=["python", "-c", "print('hello')"],
        queued_at=now,
        launch_deadline=None if deadline_in is None else now + timedelta(seconds=deadline_in),
        **fields,
    )
