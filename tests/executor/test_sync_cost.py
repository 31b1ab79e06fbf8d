"""What one sync() costs: one Query when nothing changed, whatever the number of running tasks."""

from __future__ import annotations

import pytest
from ecs_event_executor.control.messages import LaunchRequest, parse_message
from ecs_event_executor.control.tasks.item import EcsSnapshot
from ecs_event_executor.control.tasks.lifecycle import TaskState

from tests.executor.conftest import ExecutorEnv, queue_all, task_workload

pytestmark = pytest.mark.compat

RUNNING_TASKS = 1000


def test_sync_cost_with_1000_running_tasks(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    overlap = executor.settings.sync_overlap_seconds
    queue_all(executor, [task_workload(f"run-{i}") for i in range(RUNNING_TASKS)])
    launches = [
        m for m in (parse_message(r["Body"]) for r in executor_env.received()) if isinstance(m, LaunchRequest)
    ]
    assert len(launches) == RUNNING_TASKS
    # The control plane's writes, through the contract: the launcher creates the item, an ECS event runs it.
    table = executor_env.table()
    for i, launch in enumerate(launches):
        table.create_for_launch(launch, lease_seconds=60)
        table.apply_ecs_event(
            launch.launch_id, 1, EcsSnapshot(TaskState.RUNNING, _arn(i), version=3, last_status="RUNNING")
        )
    executor.get_event_buffer()

    # Nothing the executor acts on changed: exactly one request, although 1000 tasks run.
    executor_env.clock.advance(1)
    executor_env.counter.reset()
    executor.sync()
    assert executor_env.counter.calls == {("dynamodb", "Query"): 1}
    assert executor.get_event_buffer() == {}
    assert len(executor.running) == RUNNING_TASKS

    # k = 3 outcomes among the 1000: one page, so one request.
    for i, launch in enumerate(launches[:3]):
        table.apply_ecs_event(launch.launch_id, 1, _succeeded(i))
    executor_env.clock.advance(1)
    executor_env.counter.reset()
    executor.sync()
    assert executor_env.counter.calls == {("dynamodb", "Query"): 1}
    assert executor.get_event_buffer() == {_ti_key(m): ("success", None) for m in launches[:3]}
    assert len(executor.running) == RUNNING_TASKS - 3

    # k = 997 outcomes: one Query per result page and nothing else.
    for i, launch in enumerate(launches[3:], start=3):
        table.apply_ecs_event(launch.launch_id, 1, _succeeded(i))
    executor_env.clock.advance(1)
    executor_env.counter.reset()
    executor.sync()
    pages = executor_env.counter.calls[("dynamodb", "Query")]
    assert executor_env.counter.total == pages
    assert executor.get_event_buffer() == {_ti_key(m): ("success", None) for m in launches[3:]}
    print(f"\n997 outcomes: {pages} Query page(s), {executor_env.counter.total} request(s)")
    assert not executor.running

    # Outcomes are re-read (and dropped by rev) while they are inside the overlap window; then never again.
    executor_env.clock.advance(overlap + 1)
    executor.sync()
    assert executor.get_event_buffer() == {}


def _arn(i: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task/airflow/{i:032x}"


def _succeeded(i: int) -> EcsSnapshot:
    return EcsSnapshot(TaskState.SUCCEEDED, _arn(i), version=9, last_status="STOPPED", exit_code=0)


def _ti_key(launch: LaunchRequest) -> object:
    from airflow.models.taskinstancekey import TaskInstanceKey

    k = launch.key
    return TaskInstanceKey(k.dag_id, k.task_id, k.run_id, k.try_number, k.map_index)
