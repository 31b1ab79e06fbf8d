"""The task's log as the executor can show it: the control plane's record first, then the awslogs stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecs_event_executor.control.tasks.item import TaskItem

# A running task's log is read on every UI refresh; bound what one read costs.
MAX_LOG_PAGES = 10


def stream_name(prefix: str, container_name: str, task_arn: str) -> str:
    """Return the awslogs stream of a container: ``prefix/container-name/ecs-task-id`` (from a task ARN or id)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    return f"{prefix}/{container_name}/{task_id}" if prefix else f"{container_name}/{task_id}"


def _when(ms: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return "?"


def control_plane_summary(item: TaskItem) -> list[str]:
    """Return readable lines about a launch: state, attempt, reason, exit code and its history."""
    lines = [
        f"ECS event executor: launch {item.launch_id} is {item.state.value} "
        f"(attempt {item.attempt} of {item.max_attempts})"
    ]
    if item.reason:
        lines.append(f"  reason: {item.reason}")
    if item.exit_code is not None or item.stop_code:
        lines.append(f"  exit code: {item.exit_code}, stop code: {item.stop_code}")
    if item.task_arn:
        lines.append(f"  ECS task: {item.task_arn}")
    for entry in item.history:
        parts = [f"{k}={v}" for k, v in entry.items() if k != "at"]
        lines.append(f"  {_when(entry.get('at'))} " + " ".join(parts))
    return lines


def task_ids(item: TaskItem) -> list[str]:
    """Return the ECS task ids of every attempt of a launch, oldest first (a relaunch clears ``task_arn``; the
    history keeps each attempt's task id)."""
    ids = [str(e["task"]).rsplit("/", 1)[-1] for e in item.history if e.get("task")]
    if item.task_arn:
        ids.append(item.task_arn.rsplit("/", 1)[-1])
    return list(dict.fromkeys(ids))


def read_stream(logs_client: Any, log_group: str, stream: str) -> list[str]:
    """Return the messages of one CloudWatch Logs stream, oldest first (bounded by MAX_LOG_PAGES)."""
    lines: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": log_group, "logStreamName": stream, "startFromHead": True}
    for _ in range(MAX_LOG_PAGES):
        resp = logs_client.get_log_events(**kwargs)
        lines.extend(str(e.get("message", "")) for e in resp.get("events", []))
        token = resp.get("nextForwardToken")
        # CloudWatch returns the token it was given once the end of the stream is reached.
        if not token or token == kwargs.get("nextToken") or not resp.get("events"):
            break
        kwargs["nextToken"] = token
    return lines
