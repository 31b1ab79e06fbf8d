"""The launcher's allow-list: a launch runs only the Airflow workload of the task instance its message names.

The launch queue is the one way into ``ecs:RunTask`` with the task role, so a message's ``command`` is checked
before anything is stored or started. A command is accepted only in the exact shape the executor builds
(``airflow_compat.workload_command``)::

    ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", <workload JSON>]

and only when the workload is an ``ExecuteTask`` whose task instance is the message's key (dag, task, run, map
index, try number), or an ``ExecuteCallback`` whose callback id is the key's task id (the key the executor builds
for callbacks). Shells, other modules, ``--json-path`` (a file the image chooses), extra arguments, other workload
types (triggers, connection tests) and a workload for another task instance are refused with a reason.

On Airflow 2.11 the executor is handed the CLI command ``TaskInstance.command_as_list(local=True, ...)`` builds::

    ["airflow", "tasks", "run", <dag_id>, <task_id>, <run_id>, "--local", ...flags]

It is accepted only when dag, task and run are the message's key, ``--local`` is there (the supervised mode the
scheduler queues; ``--raw`` skips it) and every other argument is one of the flags Airflow 2.11's scheduler passes
(``CLI_FLAGS``, ``CLI_OPTIONS``), with ``--map-index`` equal to the key's map index. Anything else (a shell,
``bash -c``, ``;`` / ``&&`` as arguments, ``--cfg-path``, another dag/task/run) is refused.

No Airflow import: the Lambda has no Airflow. The workload JSON is read as plain JSON.
"""

from __future__ import annotations

import json
import re
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


# Airflow 2.11: the CLI the executor runs (what TaskInstance.generate_command builds) and the arguments allowed.
CLI_PREFIX = ("airflow", "tasks", "run")
# Flags without a value that 2.11's scheduler and backfill pass (generate_command).
CLI_FLAGS = frozenset(
    {"--local", "--mark-success", "--ignore-all-dependencies", "--ignore-dependencies", "--force"}
)
# Options with one value, and what the value must look like. --subdir is the DAG file (argv, never a shell);
# --pool a pool name; --pickle the DAG pickle id.
_VALUE = re.compile(r"^[^-\x00-\x1f][^\x00-\x1f]{0,1023}$")
CLI_OPTIONS: dict[str, re.Pattern[str]] = {
    "--subdir": _VALUE,
    "--pool": _VALUE,
    "--pickle": re.compile(r"^[0-9]{1,19}$"),
    "--job-id": re.compile(r"^[0-9]{1,19}$"),
    "--depends-on-past": re.compile(r"^(ignore|wait)$"),
    "--map-index": re.compile(r"^-?[0-9]{1,9}$"),
}


class WorkloadRefused(ValueError):
    """The command is not the Airflow workload of the message's task instance; the text says why."""


def check_workload_command(command: Sequence[str], key: TaskKey) -> None:
    """Raise WorkloadRefused unless ``command`` runs the Airflow workload of ``key`` and nothing else."""
    argv = list(command)
    if tuple(argv[: len(CLI_PREFIX)]) == CLI_PREFIX:
        _check_cli_command(argv, key)
        return
    if len(argv) != len(WORKLOAD_PREFIX) + 1 or tuple(argv[: len(WORKLOAD_PREFIX)]) != WORKLOAD_PREFIX:
        shown = " ".join(argv[:4])[:80]
        raise WorkloadRefused(
            f"command: only the Airflow workload entry point is run ({' '.join(WORKLOAD_PREFIX)} <workload>, "
            f"or on Airflow 2.11 {' '.join(CLI_PREFIX)} <dag_id> <task_id> <run_id> --local ...), "
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


def _check_cli_command(argv: list[str], key: TaskKey) -> None:
    """Refuse an ``airflow tasks run`` command unless it runs ``key`` with only the flags Airflow 2.11 passes."""
    if any(not isinstance(arg, str) for arg in argv):
        raise WorkloadRefused("command: every argument must be a string")
    positional = argv[len(CLI_PREFIX) : len(CLI_PREFIX) + 3]
    if len(positional) != 3:
        raise WorkloadRefused("command: airflow tasks run needs <dag_id> <task_id> <run_id>")
    for field, got, wanted in zip(
        ("dag_id", "task_id", "run_id"), positional, (key.dag_id, key.task_id, key.run_id), strict=True
    ):
        if got != wanted:
            raise WorkloadRefused(
                f"command: the command is for another task instance: {field} is {got[:60]!r}, "
                f"the message's key has {wanted!r}"
            )
    seen: set[str] = set()
    map_index: str | None = None
    rest = argv[len(CLI_PREFIX) + 3 :]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in seen:
            raise WorkloadRefused(f"command: {arg[:40]!r} is given twice")
        seen.add(arg)
        if arg in CLI_FLAGS:
            i += 1
            continue
        pattern = CLI_OPTIONS.get(arg)
        if pattern is None:
            raise WorkloadRefused(
                f"command: argument {arg[:40]!r} is not run; airflow tasks run takes only "
                f"{', '.join(sorted(CLI_FLAGS | CLI_OPTIONS.keys()))}"
            )
        value = rest[i + 1] if i + 1 < len(rest) else None
        if value is None or not pattern.match(value):
            raise WorkloadRefused(f"command: {arg} has no valid value (got {str(value)[:40]!r})")
        if arg == "--map-index":
            map_index = value
        i += 2
    if "--local" not in seen:
        raise WorkloadRefused(
            "command: airflow tasks run must run supervised (--local), as the scheduler queues it"
        )
    if int(map_index if map_index is not None else -1) != key.map_index:
        raise WorkloadRefused(
            f"command: the command is for another task instance: map index {map_index or -1}, "
            f"the message's key has {key.map_index}"
        )
