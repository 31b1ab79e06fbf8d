"""Launch requests as the executor builds them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ecs_event_executor.control.messages import LaunchRequest, TaskKey, new_launch_id, utcnow
from ecs_event_executor.control.workload_guard import WORKLOAD_PREFIX


def workload_command(key: TaskKey, **ti: Any) -> list[str]:
    """Return the container command the executor builds for ``key``: an Airflow 3 ExecuteTask workload (the
    fields the launcher checks, a token, and what else the Task SDK reads; ``ti`` overrides task instance fields)."""
    workload = {
        "type": "ExecuteTask",
        "token": "eyJhbGciOiJIUzI1NiJ9.test-token.signature",
        "dag_rel_path": "example.py",
        "bundle_info": {"name": "dags-folder", "version": None},
        "log_path": None,
        "ti": {
            "id": "0193c2a4-0000-7000-8000-000000000001",
            "dag_id": key.dag_id,
            "task_id": key.task_id,
            "run_id": key.run_id,
            "map_index": key.map_index,
            "try_number": key.try_number,
            "pool_slots": 1,
            "queue": "default",
            "priority_weight": 1,
            **ti,
        },
    }
    return [*WORKLOAD_PREFIX, json.dumps(workload)]


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
        command=workload_command(key),
        queued_at=now,
        launch_deadline=None if deadline_in is None else now + timedelta(seconds=deadline_in),
        **fields,
    )


def requests_for(n: int, queued: datetime, deadline_after: Callable[[int], float]) -> list[LaunchRequest]:
    """Return ``n`` launch requests of one burst queued at ``queued``, request ``i`` due ``deadline_after(i)`` s later."""
    out = []
    for i in range(n):
        key = TaskKey(dag_id="burst", task_id=f"t{i}", run_id="r", try_number=1)
        out.append(
            LaunchRequest(
                launch_id=new_launch_id(key),
                owner="o",
                key=key,
                command=workload_command(key),
                queued_at=queued,
                launch_deadline=queued + timedelta(seconds=deadline_after(i)),
            )
        )
    return out
