"""The example DAG end to end, on a local AWS that duplicates every SQS delivery and shuffles and duplicates ECS
events; then the scheduler SIGKILLed mid-run and restarted: its tasks are adopted and none runs twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from ecs_event_executor.local.cli import expected_states, outcome_table, wait_for_run, wait_items_final
from ecs_event_executor.local.procs import wait_until
from ecs_event_executor.local.runner import Faults
from ecs_event_executor.local.stack import LocalStack, StackOptions

from tests.e2e.conftest import ecs_tasks_per_try, processes_started_per_try

pytestmark = pytest.mark.e2e

DAG_ID, EXPECTED = expected_states()
RUN_TIMEOUT = 420


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    faults = Faults(duplicate_deliveries=True, shuffle_events=True, duplicate_events=True)
    with LocalStack(StackOptions(faults=faults, keep_state=True)) as running:
        running.wait_dag(DAG_ID)
        yield running


def test_example_dag_outcomes_with_duplicated_deliveries_and_shuffled_events(stack: LocalStack) -> None:
    run_id = stack.trigger(DAG_ID, "e2e_outcomes")
    assert (
        wait_for_run(stack, DAG_ID, run_id, timeout=RUN_TIMEOUT, show=False) == "failed"
    )  # one fails on purpose
    wait_items_final(stack, DAG_ID, run_id, timeout=60)
    table, ok = outcome_table(stack, DAG_ID, run_id, EXPECTED)
    assert ok, table
    # Every delivery came twice and every event came twice, shuffled: still one ECS task per try.
    per_try = ecs_tasks_per_try(stack, run_id)
    assert per_try and set(per_try.values()) == {1}, per_try
    assert set(processes_started_per_try(stack, run_id).values()) == {1}
    # The executor_config override reached the container (transform checks it) and the log is in CloudWatch.
    assert "DEMO_STAGE = transform" in _container_log(stack, run_id, "transform")


@pytest.mark.reliability
def test_scheduler_killed_mid_run_adopts_tasks_and_runs_none_twice(
    stack: LocalStack, figure: Callable[[str], None]
) -> None:
    run_id = stack.trigger(DAG_ID, "e2e_scheduler_kill")

    def some_running() -> bool:
        return any(ti["state"] == "running" for ti in stack.task_instances(DAG_ID, run_id))

    wait_until(some_running, timeout=RUN_TIMEOUT, what="a running task")
    before = [i for i in stack.items() if i.key and i.key.run_id == run_id]
    owners_before = {i.owner for i in before}
    in_flight = {i.launch_id: i.owner for i in before if not i.state.terminal}
    stack.kill_scheduler()
    time.sleep(1)  # the dead scheduler's tasks keep running on "ECS" meanwhile
    stack.start_scheduler()
    assert wait_for_run(stack, DAG_ID, run_id, timeout=RUN_TIMEOUT, show=False) == "failed"
    wait_items_final(stack, DAG_ID, run_id, timeout=60)
    table, ok = outcome_table(stack, DAG_ID, run_id, EXPECTED)
    assert ok, table
    per_try = ecs_tasks_per_try(stack, run_id)
    assert set(per_try.values()) == {1}, per_try
    after = {i.launch_id: i for i in stack.items() if i.key and i.key.run_id == run_id}
    owners_after = {i.owner for i in after.values()}
    # The new scheduler launched or adopted what was left: its owner appears next to the dead one's.
    assert owners_after - owners_before, (owners_before, owners_after)
    # Adoption moved the tasks that were still running to the new scheduler's change feed (an adopt message).
    adopted = [launch_id for launch_id, owner in in_flight.items() if after[launch_id].owner != owner]
    relaunched = sum(count - 1 for count in per_try.values())
    figure(
        f"R5 scheduler SIGKILLed mid-run: {len(adopted)} of {len(in_flight)} in-flight tasks adopted by the new "
        f"scheduler (the rest finished first), {relaunched} relaunched, {len(per_try)} tries ran once each"
    )
    assert adopted, (in_flight, {k: v.owner for k, v in after.items()})
    assert relaunched == 0


def _container_log(stack: LocalStack, run_id: str, task_id: str) -> str:
    assert stack.resources is not None
    item = next(i for i in stack.items() if i.key and i.key.run_id == run_id and i.key.task_id == task_id)
    assert item.task_arn
    stream = f"{stack.resources.log_stream_prefix}/{stack.resources.container_name}/{item.task_arn.rsplit('/', 1)[-1]}"
    events = stack.client("logs").get_log_events(
        logGroupName=stack.resources.log_group, logStreamName=stream, startFromHead=True
    )["events"]
    return "\n".join(e["message"] for e in events)
