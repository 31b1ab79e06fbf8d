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
