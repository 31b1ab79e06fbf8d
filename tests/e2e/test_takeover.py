"""R5: the scheduler SIGKILLed mid-run and restarted: the new scheduler adopts the running tasks, none runs twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ecs_event_executor.control.tasks.lifecycle import TaskState

from harness.local.cli import wait_for_run, wait_items_final
from harness.local.procs import wait_until
from harness.local.stack import LocalStack, StackOptions
from tests.e2e.conftest import ecs_tasks_per_try, processes_started_per_try

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

DAG_ID = "ecs_event_takeover"
DAGS = Path(__file__).resolve().parent / "dags"
RUN_TIMEOUT = 420


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # A dead scheduler is noticed within seconds (heartbeat every second, dead after 4 s, orphans checked every
    # 2 s), so the restarted scheduler adopts the tasks while they still run (they sleep 45 and 50 s).
    quick_takeover = {
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "4",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "2",
    }
    with LocalStack(StackOptions(dags_folder=DAGS, airflow_config=quick_takeover)) as running:
        running.wait_dag(DAG_ID)
        yield running


def test_scheduler_killed_mid_run_adopts_running_tasks_and_runs_none_twice(
    stack: LocalStack, figure: Callable[[str], None]
) -> None:
    run_id = stack.trigger(DAG_ID, "e2e_takeover")

    def both_running() -> list[str] | None:
        running = stack.running_on_ecs()  # the items stay PENDING until their task stops
        items = [
            i
            for i in stack.items()
            if i.key and i.key.run_id == run_id and not i.state.terminal and i.task_arn in running
        ]
        return [i.launch_id for i in items] if len(items) == 2 else None

    in_flight = wait_until(both_running, timeout=RUN_TIMEOUT, what="both mapped tasks to run on ECS")
    old_owner = {i.owner for i in stack.items() if i.launch_id in in_flight}
    stack.kill_scheduler()
    time.sleep(1)  # the dead scheduler's tasks keep running on "ECS" meanwhile
    stack.start_scheduler()

    def adopted() -> list[str] | None:
        moved = [i.launch_id for i in stack.items() if i.launch_id in in_flight and i.owner not in old_owner]
        return moved if len(moved) == len(in_flight) else None

    wait_until(adopted, timeout=120, what="the new scheduler to adopt both running tasks")
    assert wait_for_run(stack, DAG_ID, run_id, timeout=RUN_TIMEOUT, show=False) == "success"
    wait_items_final(stack, DAG_ID, run_id, timeout=60)
    per_try = ecs_tasks_per_try(stack, run_id)
    started = processes_started_per_try(stack, run_id)
    relaunched = sum(count - 1 for count in per_try.values())
    figure(
        f"R5 scheduler SIGKILLed mid-run: {len(in_flight)} of {len(in_flight)} running tasks adopted by the new "
        f"scheduler, {relaunched} relaunched, {len(per_try)} tries ran once each"
    )
    assert relaunched == 0 and set(started.values()) == {1}, (per_try, started)
    # The adopting scheduler saw the adopted tasks finish through its own change feed: the run succeeded.
    finished = [i for i in stack.items() if i.launch_id in in_flight]
    assert all(i.state is TaskState.SUCCEEDED for i in finished), finished
