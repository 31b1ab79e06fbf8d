"""Airflow's logging config plus a remote log reader that serves every try's log after it ended.

Airflow asks an executor for a task's log only while the try is RUNNING; afterwards its file task handler reads
what the module named by ``[logging] logging_config_class`` exports as ``REMOTE_TASK_LOG``. Pointing that option
at ``ecs_event_executor.log_config.LOGGING_CONFIG`` on the API server (and the scheduler) makes Airflow read each
finished try's ECS container output and the control plane's record of it, for any try (each try's launch is its
``external_executor_id``, kept in Airflow's task instance history), with nothing to upload: the worker's stdout is
already in the task definition's awslogs stream. The worker does not need this package.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.config_templates.airflow_local_settings import DEFAULT_LOGGING_CONFIG

# Airflow's own handlers and formatters, unchanged: only REMOTE_TASK_LOG is added.
LOGGING_CONFIG: dict[str, Any] = DEFAULT_LOGGING_CONFIG


class EcsTaskLogReader:
    """Read a finished try's log from the tasks table and its ECS containers' awslogs streams.

    Implements Airflow's ``RemoteLogIO``. Settings and AWS clients are built on first read from the
    ``[ecs_event_executor]`` section, so importing this module costs nothing (the worker imports it too when it
    shares the scheduler's configuration).
    """

    processors: tuple[Any, ...] = ()

    def __init__(self, reader: Any = None) -> None:
        self._reader = reader  # an object with ``try_log(ti, try_number)``: the executor, built on first use

    def upload(self, path: os.PathLike[str] | str, ti: Any = None) -> None:
        """Upload nothing: ECS's awslogs driver already ships the container's output."""

    def read(self, relative_path: str, ti: Any) -> tuple[list[str], list[str] | None]:
        """Return (sources, [log text]) of the try ``ti`` names; nothing while it runs (the executor serves it)."""
        try:
            try_number = int(ti.try_number)
            if _is_live(ti):
                return [], None
            log = self._executor().try_log(ti, try_number)
        except Exception as exc:  # a log view must never fail because of this reader
            return [f"ECS event executor could not read the task's log: {type(exc).__name__}: {exc}"], None
        if not log.lines:
            return log.sources, None
        return log.sources, ["\n".join(log.lines) + "\n"]

    def _executor(self) -> Any:
        if self._reader is None:
            from ecs_event_executor.executor import EcsEventExecutor

            self._reader = EcsEventExecutor()
        return self._reader


def _is_live(ti: Any) -> bool:
    """Return whether ``ti`` is a try still running: Airflow then asks the executor, which reads the same log."""
    from airflow.models.taskinstance import TaskInstance

    return isinstance(ti, TaskInstance) and ti.state == "running"


REMOTE_TASK_LOG = EcsTaskLogReader()
