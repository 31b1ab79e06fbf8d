"""A task stuck in queued (the local ECS holds the first launch of every task) is revoked after a short
``[scheduler] task_queued_timeout`` and requeued; then ``terminate()`` stops a running local task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState

from harness.local.procs import wait_until
from harness.local.runner import Faults
from harness.local.stack import LocalStack, StackOptions
from tests.e2e.conftest import ecs_tasks_per_try, processes_started_per_try

pytestmark = pytest.mark.e2e

DAG_ID = "ecs_event_queued"
DAGS = Path(__file__).resolve().parent / "dags"
QUEUED_TIMEOUT = 20


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    options = StackOptions(
        dags_folder=DAGS,
        faults=Faults(hold_first_launch=True),
        airflow_config={"AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT)},
    )
    with LocalStack(options) as running:
        running.wait_dag(DAG_ID)
        yield running


def test_task_stuck_in_queued_is_revoked_and_requeued(stack: LocalStack) -> None:
    run_id = stack.trigger(DAG_ID, "e2e_queued")

    def quick_state() -> str:
        return next(ti["state"] for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "quick")

    wait_until(lambda: quick_state() == "success", timeout=240, what="quick to succeed after its requeue")
    journal = stack.journal()
    held = [r for r in journal if r["kind"] == "held" and r["ti"].get("run_id") == run_id]
    assert {r["ti"]["task_id"] for r in held} == {"quick", "long_running"}
    # The held launch was stopped through the control plane (StopTask → STOPPED, UserInitiated) ...
    stopped = {r["arn"] for r in journal if r["kind"] == "finished" and r.get("stop_code") == "UserInitiated"}
    assert {r["arn"] for r in held if r["ti"]["task_id"] == "quick"} <= stopped

    def quick_states() -> list[TaskState]:
        items = [i for i in stack.items() if i.key and i.key.run_id == run_id and i.key.task_id == "quick"]
        return sorted(i.state for i in items)

    # Airflow records success from the worker, before the ECS task has stopped: wait for its STOPPED event.
    wait_until(lambda: all(s.terminal for s in quick_states()), timeout=60, what="quick's ECS task to stop")
    # The held launch was cancelled and the same try queued again. On a loaded machine the requeued launch can
    # also outlive the short timeout: Airflow requeues a try at most twice, each queueing its own launch.
    states = quick_states()
    assert states[-1] is TaskState.SUCCEEDED
    assert states[:-1] and set(states[:-1]) == {TaskState.CANCELLED} and len(states) <= 3
    # One ECS task per launch that got as far as RunTask (the held one at least), one process run.
    assert 2 <= ecs_tasks_per_try(stack, run_id)[("quick", -1, 1)] <= len(states)
    assert processes_started_per_try(stack, run_id)[("quick", -1, 1)] == 1


def test_terminate_stops_the_local_tasks(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from ecs_event_executor.executor import EcsEventExecutor

    # Its own run, so the test does not depend on running after the test above (or on the same xdist worker).
    run_id = stack.trigger(DAG_ID, "e2e_terminate")

    def running_item() -> TaskItem | None:
        running = stack.running_on_ecs()
        return next(
            (
                i
                for i in stack.items()
                if i.key
                and i.key.run_id == run_id
                and i.key.task_id == "long_running"
                and not i.state.terminal
                and i.task_arn in running
            ),
            None,
        )

    # The local ECS holds the first launch; it is revoked after the queued timeout and requeued, then runs.
    item: TaskItem = wait_until(running_item, timeout=300, what="long_running to run after its requeue")
    # A second executor (as a scheduler taking over would) adopts the running task, then terminates.
    for key, value in stack.airflow_env.items():
        if key.startswith("AIRFLOW__ECS_EVENT_EXECUTOR__"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__END_WAIT_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__OWNER", "e2e-terminator")
    executor = EcsEventExecutor(client_factory=stack.client)
    executor.start()
    ti = SimpleNamespace(
        external_executor_id=item.launch_id,
        dag_id=DAG_ID,
        task_id="long_running",
        run_id=run_id,
        map_index=-1,
        key=TaskInstanceKey(DAG_ID, "long_running", run_id, 1, -1),
    )
    assert executor.try_adopt_task_instances([ti]) == []  # type: ignore[list-item]
    executor.terminate()
    final = next(i for i in stack.items() if i.launch_id == item.launch_id)
    # A task stopped by terminate() ends CANCELLED with the stop's reason: Airflow fails that try.
    assert final.state is TaskState.CANCELLED, final
    assert final.stop_code == "UserInitiated" and "terminated" in (final.reason or ""), final
    finished = [r for r in stack.journal() if r["kind"] == "finished" and r["arn"] == final.task_arn]
    assert finished and finished[0]["stop_code"] == "UserInitiated", finished
