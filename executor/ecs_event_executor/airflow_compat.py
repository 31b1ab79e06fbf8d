"""Everything that depends on the Airflow version's executor API, in one place (Airflow 2.11, 3.1, 3.2 and 3.3).

- supported range: ``SUPPORTED_AIRFLOW`` (pyproject declares the same); ``check_airflow_version`` refuses others
  at import with a message saying which versions work.
- workloads: ``airflow.executors.workloads.ExecuteTask`` (task instances, every 3.x) and ``ExecuteCallback``
  (executor callbacks, 3.2+); both are run in the container by ``airflow.sdk.execution_time.execute_workload``.
- callback keys: 3.2's ``CallbackKey`` is the callback id itself (a ``str``); 3.3's is an object with ``.id``.
  ``task_key_of`` takes both.
- queued workloads live in ``BaseExecutor.queued_tasks`` / ``queued_callbacks`` (3.2: keyed by the callback id,
  3.3: by ``CallbackKey``; 3.4 moves them to ``executor_queues``: add that branch here when 3.4 is supported).
- workload token lifetime (what bounds the launch deadline when the token has no ``exp`` claim): 3.1 signs the
  token for ``[execution_api] jwt_expiration_time`` (600 s by default); 3.2+ for ``[scheduler]
  task_queued_timeout``. ``token_lifetime_option`` names the option per version.
- Airflow 2.11: no workloads and no token. The scheduler hands ``_process_tasks`` task tuples ``(key, command,
  queue, executor_config)`` (``execute_async`` takes one) whose command is the CLI ``airflow tasks run <dag> <task>
  <run> --local ...``; the worker talks to the metadata database. The launch deadline follows ``[scheduler]
  task_queued_timeout`` (after it the scheduler's stuck-in-queued check takes the task back). 2.11's BaseExecutor
  has no ``conf`` and no ``team_name``: ``executor_conf`` / ``executor_team`` read them for every version.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ecs_event_executor.control.messages import TaskKey
from ecs_event_executor.control.workload_guard import CALLBACK_DAG_ID as CALLBACK_DAG_ID
from ecs_event_executor.control.workload_guard import EXECUTE_WORKLOAD_MODULE as EXECUTE_WORKLOAD_MODULE
from ecs_event_executor.control.workload_guard import WORKLOAD_PYTHON, check_workload_command

if TYPE_CHECKING:
    from airflow.executors.base_executor import BaseExecutor

# The container entry point for an Airflow 3 workload (EXECUTE_WORKLOAD_MODULE, as Airflow's own remote executors
# invoke it) and the dag id of a callback's TaskKey (callbacks have no dag/task/run) are the launcher's allow-list
# (control/workload_guard.py): a command of another shape is refused there.


# The Airflow versions this executor is tested against (make test-compat); pyproject declares the same range.
# 3.0 is excluded: it is not tested (make test-compat), and its executor API differs from both 2.11 and 3.1.
SUPPORTED_AIRFLOW_RANGE = ">=2.11,!=3.0.*,<3.4"
SUPPORTED_AIRFLOW = SpecifierSet(SUPPORTED_AIRFLOW_RANGE)


class UnsupportedAirflowVersion(ImportError):
    """The installed Airflow is outside the range this executor supports; the message says which versions work."""


def check_airflow_version(version: str) -> Version:
    """Return the parsed Airflow version, or raise UnsupportedAirflowVersion naming the supported range."""
    parsed = Version(version)
    # A pre-release or dev build of a supported minor (3.3.0rc1, 3.3.0.dev0) counts as that minor.
    if Version(parsed.base_version) not in SUPPORTED_AIRFLOW:
        raise UnsupportedAirflowVersion(
            f"airflow-ecs-event-executor supports apache-airflow{SUPPORTED_AIRFLOW_RANGE}, but this environment has "
            f"Airflow {version}: install a supported Airflow, or a release of the executor made for yours."
        )
    return parsed


def installed_airflow_version() -> str:
    """Return the version of the Airflow this process imports (``airflow.__version__``)."""
    import airflow

    return str(airflow.__version__)


def token_lifetime_option(version: Version) -> tuple[str, str]:
    """Return the (section, key) of the option that sets how long a workload token is valid on ``version``."""
    if version.major < 3:
        # 2.11 has no workload token: a task queued longer than task_queued_timeout is taken back by the scheduler.
        return ("scheduler", "task_queued_timeout")
    if version < Version("3.2"):
        # 3.1's ExecuteTask.make signs with the executor's jwt_generator: valid_for = jwt_expiration_time.
        return ("execution_api", "jwt_expiration_time")
    # 3.2+ BaseWorkloadSchema.generate_token: valid_for = task_queued_timeout.
    return ("scheduler", "task_queued_timeout")


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
    # The task's Airflow queue (it picks the launch profile); callbacks have none.
    queue: str | None = None


def workload_command(workload: Any) -> list[str]:
    """Return the container argv that runs ``workload`` with the Task SDK."""
    return [WORKLOAD_PYTHON, "-m", EXECUTE_WORKLOAD_MODULE, "--json-string", workload.model_dump_json()]


def executor_conf(executor: BaseExecutor) -> Any:
    """Return the configuration the executor reads: its own (3.x, per team) or Airflow's global one (2.11)."""
    conf = getattr(executor, "conf", None)
    if conf is None:
        from airflow.configuration import conf
    return conf


def executor_team(executor: BaseExecutor) -> str | None:
    """Return the executor's team (Airflow 3 multi-team), or None (2.11 has no teams)."""
    team = getattr(executor, "team_name", None)
    return team if isinstance(team, str) else None


def is_task_tuple(workload: Any) -> bool:
    """Tell whether ``workload`` is Airflow 2.11's ``(key, command, queue, executor_config)`` task tuple."""
    return isinstance(workload, tuple) and len(workload) == 4 and is_task_instance_key(workload[0])


def task_key_of(key: Any) -> TaskKey:
    """Return the contract's TaskKey for an Airflow TaskInstanceKey or CallbackKey (3.2: the id string)."""
    if hasattr(key, "dag_id"):
        return TaskKey(
            dag_id=key.dag_id,
            task_id=key.task_id,
            run_id=key.run_id,
            map_index=key.map_index,
            try_number=key.try_number,
        )
    callback_id = key if isinstance(key, str) else getattr(key, "id", None)
    if callback_id is None:
        raise ValueError(f"cannot run a workload keyed by {type(key).__name__}")
    return TaskKey(dag_id=CALLBACK_DAG_ID, task_id=str(callback_id), run_id="callback", try_number=0)


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


def workload_key(workload: Any) -> Any:
    """Return the key Airflow queued ``workload`` under (what success / fail take), or None if it has none."""
    if is_task_tuple(workload):
        return workload[0]
    from airflow.executors import workloads

    if isinstance(workload, workloads.ExecuteTask):
        return workload.ti.key
    callback_type = getattr(workloads, "ExecuteCallback", None)  # 3.2+
    if callback_type is not None and isinstance(workload, callback_type):
        return workload.callback.key
    return getattr(workload, "key", None)


def drop_queued(executor: BaseExecutor, key: Any) -> None:
    """Remove ``key`` from whichever of the executor's queues holds it."""
    executor.queued_tasks.pop(key, None)
    getattr(executor, "queued_callbacks", {}).pop(key, None)
    getattr(executor, "queued_connection_tests", {}).pop(key, None)  # 3.3


def take_workload(executor: BaseExecutor, workload: Any) -> QueuedWork:
    """Describe ``workload`` and remove it from the executor's queue; ValueError for an unsupported type.

    The description is built first: a workload that cannot be described stays queued for the caller to fail.
    """
    if is_task_tuple(workload):
        key, command, queue, executor_config = workload
        if not isinstance(command, list | tuple) or not all(isinstance(arg, str) for arg in command):
            raise ValueError(f"the task's command is not a list of strings: {type(command).__name__}")
        task_key = task_key_of(key)
        # The launcher's allow-list, applied at queue time too: a command it would refuse fails the task now.
        check_workload_command(command, task_key)
        executor.queued_tasks.pop(key, None)
        return QueuedWork(key, task_key, list(command), executor_config, queue=queue)
    from airflow.executors import workloads

    if isinstance(workload, workloads.ExecuteTask):
        ti_key = workload.ti.key
        task_key = task_key_of(ti_key)
        executor.queued_tasks.pop(ti_key, None)
        return QueuedWork(
            ti_key,
            task_key,
            workload_command(workload),
            workload.ti.executor_config,
            token_expires_at=token_expiry(getattr(workload, "token", None)),
            external_executor_id=getattr(workload.ti, "external_executor_id", None),
            queue=getattr(workload.ti, "queue", None),
        )
    callback_type = getattr(workloads, "ExecuteCallback", None)  # 3.2+
    if callback_type is not None and isinstance(workload, callback_type):
        callback_key = workload.callback.key
        task_key = task_key_of(callback_key)
        executor.queued_callbacks.pop(callback_key, None)
        return QueuedWork(
            callback_key,
            task_key,
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
