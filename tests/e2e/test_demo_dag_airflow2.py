"""The example DAG end to end on a real Airflow 2.11 (its own virtualenv, ``.compat/airflow-2.11``): webserver,
scheduler and triggerer from that install on an embedded PostgreSQL, each task an ``airflow tasks run ... --local``
launch that the local ECS runner runs with 2.11's ``airflow``, under the same duplicated deliveries and shuffled,
duplicated events as test_demo_dag.py.

The virtualenv is made through the Makefile's rule from requirements/airflow-2.11.lock when missing (``make unit``
orders it first), so a bare clone runs this test rather than skipping it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecs_event_executor.control.tasks.table import TaskTable

from harness import REPO_ROOT
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

AIRFLOW = "2.11"
VENV = REPO_ROOT / ".compat" / f"airflow-{AIRFLOW}"
DAG_ID, EXPECTED = expected_states()
RUN_TIMEOUT = 420
# Making the virtualenv from its lock (pip, from a local index or the package index): minutes on 2 cores.
MAKE_VENV_TIMEOUT = 1200


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    subprocess.run(
        ["make", f".compat/airflow-{AIRFLOW}/.installed"],
        cwd=REPO_ROOT,
        check=True,
        timeout=MAKE_VENV_TIMEOUT,
        stdout=subprocess.DEVNULL,
    )
    faults = Faults(duplicate_deliveries=True, shuffle_events=True, duplicate_events=True)
    with LocalStack(StackOptions(faults=faults, keep_state=True, airflow_venv=VENV)) as running:
        running.wait_dag(DAG_ID)
        yield running


def test_example_dag_ends_as_expected_on_airflow_2_11(stack: LocalStack) -> None:
    assert stack.airflow2 and stack.airflow_version.startswith(f"{AIRFLOW}."), stack.airflow_version
    run_id = stack.trigger(DAG_ID, "e2e_airflow2")
    assert (
        wait_for_run(stack, DAG_ID, run_id, timeout=RUN_TIMEOUT, show=False) == "failed"
    )  # one fails on purpose
    wait_items_final(stack, DAG_ID, run_id, timeout=60)
    table, ok = outcome_table(stack, DAG_ID, run_id, EXPECTED)
    assert ok, table
    # Every launch carried 2.11's CLI command for its own task instance, supervised (--local).
    assert stack.resources is not None
    requests = TaskTable(stack.resources.table_name, client=stack.client("dynamodb"))
    items = latest_items(stack.items(), DAG_ID, run_id)
    ran = {name: item for name, item in items.items() if item.task_arn}
    assert set(ran) == {name for name, state in EXPECTED.items() if state != "upstream_failed"}, table
    for name, item in ran.items():
        request = requests.read_request(item.launch_id)
        assert request is not None and item.key is not None, name
        assert request.command[:6] == ["airflow", "tasks", "run", DAG_ID, item.key.task_id, run_id], name
        assert "--local" in request.command, request.command
    # Duplicated deliveries and events: still one ECS task and one process per task instance (no retries here).
    per_try = ecs_tasks_per_try(stack, run_id)
    assert per_try and set(per_try.values()) == {1}, per_try
    assert len(per_try) == len(ran), per_try
    assert set(processes_started_per_try(stack, run_id).values()) == {1}
    # The executor_config override reached the container, the task's output is in CloudWatch, and the queue
    # and image picked the launch profile and the task definition as on Airflow 3.
    assert "DEMO_STAGE = transform" in container_log(stack, run_id, "transform")
    facts = {name: launch_facts(stack, item) for name, item in items.items()}
    assert facts["on_spot"][:2] == ("spot", "FARGATE_SPOT"), table
    assert facts["on_other_image"][2].endswith("airflow-gpu:demo"), table
    assert facts["extract"][:2] == ("default", "FARGATE"), table


def test_the_database_address_is_in_no_log(stack: LocalStack) -> None:
    """The worker's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (an ECS secret when deployed) is never printed."""
    url = stack.database_url
    assert url.startswith("postgresql+psycopg2://"), "2.11 runs on PostgreSQL locally"
    for name, path in stack.logs():
        assert url not in Path(path).read_text(errors="replace"), name
    assert stack.resources is not None
    logs = stack.client("logs")
    group = stack.resources.log_group
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
        assert all(url not in e["message"] for e in events), stream["logStreamName"]
    printed = "\n".join(stack.cli_environment_lines(reveal_secrets=False))
    assert url not in printed
    # The runner's container environment has it, readable by the owner only.
    container_env = stack.state_dir / "container_env.json"
    assert url in container_env.read_text() and container_env.stat().st_mode & 0o077 == 0
