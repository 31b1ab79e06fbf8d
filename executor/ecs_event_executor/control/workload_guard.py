"""The launcher's allow-list: a launch runs only the Airflow workload of the task instance its message names.

The launch queue is the one way into ``ecs:RunTask`` with the task role, so a message's ``command`` is checked
before anything is stored or started. A command is accepted only in the exact shape the executor builds
(``airflow_compat.workload_command``)::

    ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", <workload JSON>]

and only when the workload is an ``ExecuteTask`` whose task instance is the message's key (dag, task, run, map
index, try number), or an ``ExecuteCallback`` whose callback id is the key's task id (the key the executor builds
for callbacks). Shells, other modules, ``--json-path`` (a file the image chooses), extra arguments, other workload
types (triggers, connection tests) and a workload for another task instance are refused with a reason.

Airflow 2.11's ``airflow tasks run <dag> <task> <run> ...`` is not accepted: the executor does not support 2.11
yet. When it does, its shape goes here, checked against the same key.

No Airflow import: the Lambda has no Airflow. The workload JSON is read as plain JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ecs_event_executor.control.messages import TaskKey

# The executable and module Airflow's own container executors invoke (airflow_compat.EXECUTE_WORKLOAD_MODULE;
# repeated here because airflow_compat is executor-side and this module runs in the Lambda).
WORKLOAD_PYTHON = "python"
EXECUTE_WORKLOAD_MODULE = "airflow.sdk.execution_time.execute_workload"
WORKLOAD_PREFIX = (WORKLOAD_PYTHON, "-m", EXECUTE_WORKLOAD_MODULE, "--json-string")
# The dag id the executor puts in the key of a callback workload (airflow_compat.CALLBACK_DAG_ID).
CALLBACK_DAG_ID = "__executor_callback__"


class WorkloadRefused(ValueError):
    """The command is not the Airflow workload of the message's task instance; the text says why."""


def check_workload_command(command: Sequence[str], key: TaskKey) -> None:
    """Raise WorkloadRefused unless ``command`` runs the Airflow workload of ``key`` and nothing else."""
    argv = list(command)
    if len(argv) != len(WORKLOAD_PREFIX) + 1 or tuple(argv[: len(WORKLOAD_PREFIX)]) != WORKLOAD_PREFIX:
        shown = " ".join(argv[:4])[:80]
        raise WorkloadRefused(
            f"command: only the Airflow workload entry point is run ({' '.join(WORKLOAD_PREFIX)} <workload>), "
            f"got {shown!r} ({len(argv)} arguments)"
        )
    try:
        workload = json.loads(argv[-1])
    except ValueError as exc:
        raise WorkloadRefused(f"command: the workload is not JSON: {exc}") from None
    if not isinstance(workload, Mapping):
        raise WorkloadRefused("command: the workload is not a JSON object")
    kind = workload.get("type")
    if kind == "ExecuteTask":
        _check_task_instance(workload.get("ti"), key)
    elif kind == "ExecuteCallback":
        _check_callback(workload.get("callback"), key)
    else:
        raise WorkloadRefused(
            f"command: workload type {str(kind)[:40]!r} is not run; only ExecuteTask and ExecuteCallback are"
        )


def _check_task_instance(ti: Any, key: TaskKey) -> None:
    if not isinstance(ti, Mapping):
        raise WorkloadRefused("command: the ExecuteTask workload has no task instance")
    wanted = {
        "dag_id": key.dag_id,
        "task_id": key.task_id,
        "run_id": key.run_id,
        "map_index": key.map_index,
        "try_number": key.try_number,
    }
    for field, value in wanted.items():
        got = ti.get(field, -1 if field == "map_index" else None)
        # bool is an int in Python: a try number given as true is not the try number 1.
        if got != value or isinstance(got, bool):
            raise WorkloadRefused(
                f"command: the workload is for another task instance: ti.{field} is {str(got)[:60]!r}, "
                f"the message's key has {value!r}"
            )


def _check_callback(callback: Any, key: TaskKey) -> None:
    if not isinstance(callback, Mapping):
        raise WorkloadRefused("command: the ExecuteCallback workload has no callback")
    if key.dag_id != CALLBACK_DAG_ID or callback.get("id") != key.task_id:
        raise WorkloadRefused(
            f"command: the callback workload {str(callback.get('id'))[:40]!r} is not the message's key "
            f"({key.dag_id}/{key.task_id})"
        )
