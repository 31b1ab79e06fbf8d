"""Run Apache Airflow tasks on Amazon ECS through an event-driven control plane.

``EcsEventExecutor`` is imported lazily: the Lambda handlers import ``ecs_event_executor.control`` without Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ecs_event_executor.executor import EcsEventExecutor

__all__ = ["EcsEventExecutor"]


def __getattr__(name: str) -> Any:
    if name == "EcsEventExecutor":
        from ecs_event_executor.executor import EcsEventExecutor

        return EcsEventExecutor
    raise AttributeError(name)
