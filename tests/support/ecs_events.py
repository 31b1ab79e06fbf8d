"""Build "ECS Task State Change" events in the documented shape (see tests/fixtures/ecs_events), from a moto task."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def iso(ts: datetime | None = None) -> str:
    return (ts or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


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
) -> dict[str, Any]:
    """Return an EventBridge event for ``task`` (a RunTask/DescribeTasks task dict) at one lifecycle step."""
    if desired_status is None:
        desired_status = (
            "STOPPED"
            if last_status in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED")
            else "RUNNING"
        )
    if started is None:
        started = last_status not in ("PROVISIONING", "PENDING", "ACTIVATING")
    container: dict[str, Any] = {
        "containerArn": f"{task['taskArn'].replace(':task/', ':container/')}/{container_name}",
        "lastStatus": "STOPPED" if exit_code is not None else ("RUNNING" if started else "PENDING"),
        "name": container_name,
        "taskArn": task["taskArn"],
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    containers = [container]
    for name, code in (sidecars or {}).items():
        side: dict[str, Any] = {
            "name": name,
            "lastStatus": "STOPPED" if code is not None else "RUNNING",
            "taskArn": task["taskArn"],
        }
        if code is not None:
            side["exitCode"] = code
        containers.append(side)
    detail: dict[str, Any] = {
        "clusterArn": task["clusterArn"],
        "containers": containers,
        "createdAt": iso(),
        "desiredStatus": desired_status,
        "group": task.get("group", "family:airflow"),
        "lastStatus": last_status,
        "launchType": task.get("launchType", "FARGATE"),
        "overrides": task.get("overrides", {}),
        "startedBy": task.get("startedBy"),
        "taskArn": task["taskArn"],
        "taskDefinitionArn": task.get("taskDefinitionArn"),
        "updatedAt": iso(),
        "version": version,
    }
    if started:
        detail["startedAt"] = iso()
    if stop_code:
        detail["stopCode"] = stop_code
    if stopped_reason:
        detail["stoppedReason"] = stopped_reason
    if last_status == "STOPPED":
        detail["stoppedAt"] = iso()
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": iso(),
        "region": "us-east-1",
        "resources": [task["taskArn"]],
        "detail": detail,
    }
