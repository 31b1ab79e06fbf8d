"""Everything that depends on the Airflow version's executor API, in one place (written against Airflow 3.3).

- workloads: ``airflow.executors.workloads.ExecuteTask`` (task instances) and ``ExecuteCallback`` (3.3 executor
  callbacks, keyed by ``CallbackKey``); both are run in the container by ``airflow.sdk.execution_time.execute_workload``.
- queued workloads live in ``BaseExecutor.queued_tasks`` / ``queued_callbacks`` (3.4 moves them to
  ``executor_queues``; add that branch here when 3.4 is supported).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ecs_event_executor.control.messages import TaskKey
from ecs_event_executor.control.workload_guard import CALLBACK_DAG_ID as CALLBACK_DAG_ID
from ecs_event_executor.control.workload_guard import EXECUTE_WORKLOAD_MODULE as EXECUTE_WORKLOAD_MODULE
from ecs_event_executor.control.workload_guard import WORKLOAD_PYTHON

if TYPE_CHECKING:
    from airflow.executors.base_executor import BaseExecutor

# The container entry point for an Airflow 3 workload (EXECUTE_WORKLOAD_MODULE, as Airflow's own remote executors
# invoke it) and the dag id of a callback's TaskKey (callbacks have no dag/task/run) are the launcher's allow-list
# (control/workload_guard.py): a command of another shape is refused there.


@dataclass(frozen=True)
class QueuedWork:
    """One workload taken from the executor's queue, in the terms the control plane needs."""

    key: Any  # TaskInstanceKey or CallbackKey: what success / fail / running_state take
    task_key: TaskKey
    command: list[str]
    executor_config: Any
    # When the workload's token expires (its ``exp`` claim), if it carries one.
    token_expires_at: datetime | None = None
    # The external executor id the scheduler assigned when it queued the task (pre_assigns_external_executor_id).
    external_executor_id: str | None = None


def workload_command(workload: Any) -> list[str]:
    """Return the container argv that runs ``workload`` with the Task SDK."""
    return [WORKLOAD_PYTHON, "-m", EXECUTE_WORKLOAD_MODULE, "--json-string", workload.model_dump_json()]


def task_key_of(key: Any) -> TaskKey:
    """Return the contract's TaskKey for an Airflow TaskInstanceKey or CallbackKey."""
    if hasattr(key, "dag_id"):
        return TaskKey(
            dag_id=key.dag_id,
            task_id=key.task_id,
            run_id=key.run_id,
            map_index=key.map_index,
            try_number=key.try_number,
        )
    return TaskKey(dag_id=CALLBACK_DAG_ID, task_id=str(key.id), run_id="callback", try_number=0)


def token_expiry(token: Any) -> datetime | None:
    """Return when a JWT expires, from its ``exp`` claim, read without verifying it (None if there is none).

    The executor only schedules by it; the API server verifies the token when the task uses it.
    """
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return datetime.fromtimestamp(exp, UTC)
    except (ValueError, TypeError, OverflowError):
        pass
    return None


def is_task_instance_key(key: Any) -> bool:
    return hasattr(key, "dag_id") and hasattr(key, "try_number")


def take_workload(executor: BaseExecutor, workload: Any) -> QueuedWork:
    """Remove ``workload`` from the executor's queue and describe it; ValueError for an unsupported type."""
    from airflow.executors import workloads

    if isinstance(workload, workloads.ExecuteTask):
        ti_key = workload.ti.key
        executor.queued_tasks.pop(ti_key, None)
        return QueuedWork(
            ti_key,
            task_key_of(ti_key),
            workload_command(workload),
            workload.ti.executor_config,
            token_expires_at=token_expiry(getattr(workload, "token", None)),
            external_executor_id=getattr(workload.ti, "external_executor_id", None),
        )
    if isinstance(workload, workloads.ExecuteCallback):
        callback_key = workload.callback.key
        executor.queued_callbacks.pop(callback_key, None)
        return QueuedWork(
            callback_key,
            task_key_of(callback_key),
            workload_command(workload),
            None,
            token_expires_at=token_expiry(getattr(workload, "token", None)),
        )
    raise ValueError(f"cannot run workloads of type {type(workload).__name__}")


def launch_id_of_try(ti: Any, try_number: int) -> str | None:
    """Return the launch id (external executor id) of ``ti``'s try ``try_number``.

    ``ti`` is a TaskInstance (its current try) or a TaskInstanceHistory row (one earlier try, as Airflow's log
    endpoint passes it). For an earlier try of a TaskInstance the id is read from the task instance history, where
    Airflow copies a try's row, ``external_executor_id`` included, before the next try starts.
    """
    if getattr(ti, "try_number", None) == try_number:
        return getattr(ti, "external_executor_id", None)
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalar(
            select(TaskInstanceHistory.external_executor_id).where(
                TaskInstanceHistory.dag_id == ti.dag_id,
                TaskInstanceHistory.task_id == ti.task_id,
                TaskInstanceHistory.run_id == ti.run_id,
                TaskInstanceHistory.map_index == ti.map_index,
                TaskInstanceHistory.try_number == try_number,
            )
        )
    return str(found) if found else None


# Airflow 3.3.2's scheduler saves an executor's event-log rows with ``session.bulk_save_objects`` over a generator
# that pops them from ``executor._task_event_logs``. SQLAlchemy's instance state refers to its object weakly, so a
# ``Log`` referenced nowhere else is collected before the INSERT and the row goes out empty ("NOT NULL constraint
# failed: log.event", logged by the scheduler and lost), on SQLAlchemy 2.0 and 2.1 alike. The executor holds its
# newest rows until the scheduler has saved them (it saves every loop); this many cover any loop's worth.
TASK_EVENT_LOGS_HELD = 1000


def hold_task_event_log(executor: BaseExecutor, held: Any) -> None:
    """Keep a strong reference to the event-log row ``log_task_event`` just queued, so the scheduler saves it."""
    queued = getattr(executor, "_task_event_logs", None)
    if queued:
        held.append(queued[-1])
