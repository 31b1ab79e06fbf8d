"""The example DAG end to end, on a local AWS that duplicates every SQS delivery and shuffles and duplicates ECS
events (the scheduler takeover is in test_takeover.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.local.cli import (
    expected_states,
    latest_items,
    launch_facts,
    outcome_table,
    wait_for_run,
    wait_items_final,
)
from harness.local.runner import Faults
from harness.local.stack import LocalStack, StackOptions
from tests.e2e.conftest import container_log, ecs_tasks_per_try, processes_started_per_try

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
    assert "DEMO_STAGE = transform" in container_log(stack, run_id, "transform")
    # queue="spot" ran with the spot profile's capacity provider; the image a task named, on a task definition
    # derived from the stack's; the others on the default profile and the stack's own image.
    items = latest_items(stack.items(), DAG_ID, run_id)
    facts = {name: launch_facts(stack, item) for name, item in items.items()}
    assert facts["on_spot"][:2] == ("spot", "FARGATE_SPOT"), table
    assert facts["on_other_image"][0] == "default" and facts["on_other_image"][2].endswith(
        "airflow-gpu:demo"
    ), table
    assert facts["extract"][:2] == ("default", "FARGATE"), table
    assert not facts["extract"][2].endswith("airflow-gpu:demo"), table
