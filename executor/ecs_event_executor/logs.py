"""The task's log as Airflow shows it: the control plane's record of one try, then its container's awslogs stream.

One reader (``read_try_log``) serves the executor's ``get_task_log`` (while a try runs) and the remote log reader
Airflow's file task handler calls after it ended (``ecs_event_executor.log_config``); ``failure_tail`` gives the
last lines a failed try's info carries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ecs_event_executor.control.tasks.item import TaskItem

# A running task's log is read on every UI refresh; bound what one read costs.
MAX_LOG_PAGES = 10
# A failed try's info (Airflow's event log, the scheduler's log) carries this many of the container's last lines,
# each cut to TAIL_LINE_CHARS: enough for a traceback's end, small enough for an event-log row.
TAIL_LINES = 10
TAIL_LINE_CHARS = 300


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


def tail_stream(logs_client: Any, log_group: str, stream: str, limit: int = TAIL_LINES) -> list[str]:
    """Return the last ``limit`` messages of a CloudWatch Logs stream, oldest first (one request)."""
    resp = logs_client.get_log_events(
        logGroupName=log_group, logStreamName=stream, startFromHead=False, limit=limit
    )
    return [str(e.get("message", "")) for e in resp.get("events", [])][-limit:]


def readable(line: str) -> str:
    """Return a container log line as a person reads it: a Task SDK JSON line becomes its level and event."""
    text = line.rstrip()
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict) and "event" in record:
            level = str(record.get("level", "")).upper()
            text = f"{level} {record['event']}".strip()
    return text[:TAIL_LINE_CHARS]


def failure_tail(
    item: TaskItem, read_tail: Callable[[str], list[str]], *, stream_of: Callable[[str], str]
) -> str:
    """Return the last lines of the try's newest container log, as a block to append to a failure's info.

    ``read_tail`` reads one stream; ``stream_of`` names a task id's stream. An unreadable log is said, not raised.
    """
    ids = task_ids(item)
    if not ids:
        return ""
    stream = stream_of(ids[-1])
    try:
        lines = [readable(line) for line in read_tail(stream)]
    except Exception as exc:  # the info must still reach Airflow
        return f"\n(the container's log {stream} could not be read: {type(exc).__name__}: {exc})"
    if not lines:
        return f"\n(the container's log {stream} is empty)"
    return f"\nlast lines of the container's log {stream}:\n" + "\n".join(f"  {line}" for line in lines)


@dataclass
class TryLog:
    """One try's log for Airflow: ``sources`` (where it was read) and ``lines`` (what the UI shows, in order)."""

    sources: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _record(at_ms: int | None, event: str, level: str = "info") -> str:
    """Return one line in the Task SDK's JSON shape, so Airflow's reader shows it with its time and level."""
    when = datetime.fromtimestamp((at_ms or 0) / 1000, UTC).isoformat() if at_ms else None
    return json.dumps({"timestamp": when, "level": level, "event": event, "logger": "ecs_event_executor"})


def read_try_log(
    item: TaskItem | None,
    launch_id: str,
    *,
    read_stream_of: Callable[[str], list[str]] | None,
    stream_of: Callable[[str], str],
    where: str,
) -> TryLog:
    """Return one try's log: every attempt's container output, then the control plane's record of the launch.

    ``read_stream_of`` reads a stream by name (None: no log group configured); ``where`` names the log group in
    the sources. The record comes last, stamped with the time the launch finished, so a failed try's reason is
    the last thing a reader sees.
    """
    result = TryLog()
    if item is None:
        result.sources.append(f"ECS event executor: no record of launch {launch_id} (expired after its TTL?)")
        return result
    summary = control_plane_summary(item)
    result.sources.append(summary[0])
    if read_stream_of is None:
        result.sources.append("[ecs_event_executor] log_group is not set: container logs are not read")
    else:
        for task_id in task_ids(item):
            stream = stream_of(task_id)
            result.sources.append(f"CloudWatch Logs {where}/{stream}")
            try:
                result.lines.extend(read_stream_of(stream))
            except Exception as exc:  # one unreadable stream must not hide the others or the record
                result.sources.append(f"Could not read {where}/{stream}: {type(exc).__name__}: {exc}")
    end = item.finished_at or item.last_step_at
    level = "error" if item.state.value in ("FAILED", "CANCELLED") else "info"
    result.lines.extend(_record(end, line.strip(), level) for line in summary)
    return result
