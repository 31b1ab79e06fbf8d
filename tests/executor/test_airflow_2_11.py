"""Airflow 2.11's executor API: task tuples with the ``airflow tasks run`` command, sent as launch messages.

The scheduler of 2.11 calls ``_process_tasks`` with ``(key, command, queue, executor_config)`` tuples
(``execute_async`` for one); the same path is exercised on every version, since it needs no workload type.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from ecs_event_executor.control.messages import LaunchRequest
from ecs_event_executor.executor import AIRFLOW_VERSION

from tests.executor.conftest import AIRFLOW_2, ExecutorEnv

pytestmark = pytest.mark.compat

KEY = TaskInstanceKey("etl", "load", "scheduled__2026-12-01T00:00:00+00:00", 1, -1)
COMMAND = [
    "airflow",
    "tasks",
    "run",
    KEY.dag_id,
    KEY.task_id,
    KEY.run_id,
    "--local",
    "--subdir",
    "DAGS_FOLDER/etl.py",
]


def launches(env: ExecutorEnv) -> list[LaunchRequest]:
    """The launch messages on the queue (start()'s health check also sends a ping)."""
    bodies = [json.loads(m["Body"]) for m in env.received()]
    return [LaunchRequest.model_validate(b) for b in bodies if b.get("kind") == "launch"]


def test_execute_async_sends_the_cli_command_with_a_deadline_of_task_queued_timeout(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT", "1200")
    monkeypatch.setenv("AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME", "900")
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_START_MARGIN_SECONDS", "100")
    executor = executor_env.executor()
    executor.execute_async(KEY, COMMAND, queue="default", executor_config=None)
    (request,) = launches(executor_env)
    assert request.command == COMMAND
    assert (request.key.dag_id, request.key.task_id, request.key.run_id, request.key.try_number) == (
        "etl",
        "load",
        KEY.run_id,
        1,
    )
    assert request.launch_deadline is not None
    # 2.11 has no token: task_queued_timeout bounds the launch. The same call on 3.1 (a tokenless launch) follows
    # 3.1's token lifetime, jwt_expiration_time.
    lifetime = 900 if not AIRFLOW_2 and AIRFLOW_VERSION.release[:2] < (3, 2) else 1200
    assert request.launch_deadline - request.queued_at == timedelta(seconds=lifetime - 100)
    assert KEY in executor.running
    # The launch id becomes external_executor_id (what another scheduler adopts by).
    assert executor.event_buffer[KEY][1] == request.launch_id


def test_process_tasks_sends_every_tuple_and_empties_the_queue(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    keys = [KEY._replace(task_id=f"t{i}") for i in range(12)]
    for key in keys:
        executor.queued_tasks[key] = (None, 1, "default", None)  # type: ignore[assignment]
    executor._process_tasks(
        [(key, [*COMMAND[:4], key.task_id, *COMMAND[5:]], "default", None) for key in keys]
    )
    sent = launches(executor_env)
    assert sorted(r.key.task_id for r in sent) == sorted(k.task_id for k in keys)
    assert not executor.queued_tasks
    assert set(keys) <= executor.running


def test_a_command_the_launcher_would_refuse_fails_the_task_at_queue_time_with_the_reason(
    executor_env: ExecutorEnv,
) -> None:
    executor = executor_env.executor()
    executor.queued_tasks[KEY] = (None, 1, "default", None)  # type: ignore[assignment]
    executor._process_tasks([(KEY, ["bash", "-c", " ".join(COMMAND)], "default", None)])
    assert launches(executor_env) == []
    state, info = executor.event_buffer[KEY]
    assert state == "failed"
    assert "EcsEventExecutor cannot run this workload" in str(info) and "entry point" in str(info)
    assert KEY not in executor.queued_tasks and KEY not in executor.running


def test_the_tuples_queue_picks_the_launch_profile_and_an_unknown_one_fails_with_the_reason(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2.11 hands the queue in the tuple, not on a workload's task instance: it still chooses the profile."""
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_PROFILES", "spot,gpu")
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__UNKNOWN_QUEUE", "refuse")
    executor = executor_env.executor()
    typo = KEY._replace(task_id="typo")
    executor.execute_async(KEY, COMMAND, queue="spot")
    executor.execute_async(typo, [*COMMAND[:4], "typo", *COMMAND[5:]], queue="spto")
    (request,) = launches(executor_env)
    assert (request.key.task_id, request.queue) == ("load", "spot")
    state, info = executor.event_buffer[typo]
    assert state == "failed" and "queue 'spto' names no launch profile" in str(info)
