"""End-to-end helpers: a real Airflow against the local control plane (``harness.local``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.local.stack import LocalStack


def ecs_tasks_per_try(stack: LocalStack, run_id: str) -> Counter[tuple[Any, ...]]:
    """ECS tasks started per Airflow task try of one run: moto makes one task per RunTask, the runner sees all."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for record in stack.journal():
        ti = record.get("ti") or {}
        if record["kind"] in ("discovered", "held") and ti.get("run_id") == run_id:
            counts[(ti["task_id"], ti["map_index"], ti["try_number"])] += 1
    return counts


def processes_started_per_try(stack: LocalStack, run_id: str) -> Counter[tuple[Any, ...]]:
    counts: Counter[tuple[Any, ...]] = Counter()
    for record in stack.journal():
        ti = record.get("ti") or {}
        if record["kind"] == "started" and ti.get("run_id") == run_id:
            counts[(ti["task_id"], ti["map_index"], ti["try_number"])] += 1
    return counts


def container_log(stack: LocalStack, run_id: str, task_id: str) -> str:
    """The CloudWatch Logs output of the latest ECS task of ``task_id`` in one run."""
    assert stack.resources is not None
    item = next(i for i in stack.items() if i.key and i.key.run_id == run_id and i.key.task_id == task_id)
    assert item.task_arn
    stream = f"{stack.resources.log_stream_prefix}/{stack.resources.container_name}/{item.task_arn.rsplit('/', 1)[-1]}"
    events = stack.client("logs").get_log_events(
        logGroupName=stack.resources.log_group, logStreamName=stream, startFromHead=True
    )["events"]
    return "\n".join(e["message"] for e in events)
