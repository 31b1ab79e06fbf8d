"""Build "ECS Task State Change" events for a moto task at one lifecycle step (shapes: ``harness.aws_shapes``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from harness.aws_shapes import STOPPING_STATUSES, ecs_container, ecs_task_detail, task_state_change


def task_event(
    task: dict[str, Any],
    *,
    last_status: str,
    version: int,
    desired_status: str | None = None,
    container_name: str = "base",
    exit_code: int | None = None,
    stop_code: str | None = None,
    stopped_reason: str | None = None,
    started: bool | None = None,
    sidecars: dict[str, int | None] | None = None,
    container_reason: str | None = None,
) -> dict[str, Any]:
    """Return an EventBridge event for ``task`` (a RunTask/DescribeTasks task dict) at one lifecycle step."""
    if desired_status is None:
        desired_status = "STOPPED" if last_status in STOPPING_STATUSES else "RUNNING"
    if started is None:
        started = last_status not in ("PROVISIONING", "PENDING", "ACTIVATING")
    arn = task["taskArn"]
    containers = [
        ecs_container(
            arn,
            container_name,
            last_status="STOPPED" if exit_code is not None else ("RUNNING" if started else "PENDING"),
            exit_code=exit_code,
            container_arn=f"{arn.replace(':task/', ':container/')}/{container_name}",
            reason=container_reason,
        )
    ]
    containers += [
        ecs_container(arn, name, last_status="STOPPED" if code is not None else "RUNNING", exit_code=code)
        for name, code in (sidecars or {}).items()
    ]
    detail = ecs_task_detail(
        task,
        last_status=last_status,
        version=version,
        containers=containers,
        desired_status=desired_status,
        started_at=datetime.now(UTC) if started else None,
        stop_code=stop_code,
        stopped_reason=stopped_reason,
    )
    return task_state_change(detail)
