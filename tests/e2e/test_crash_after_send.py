"""R10: the scheduler SIGKILLed between SendMessageBatch and its next commit, 10 times, with a real Airflow.

The crash hook (``crash_hook/sitecustomize.py``, on the scheduler's PYTHONPATH only in this test) kills the
scheduler right after a SendMessageBatch carrying launch messages returned: the launches are in the queue, the task
instances are QUEUED with their pre-assigned external_executor_id, and nothing after the send was committed. The
test restarts the scheduler after every kill; the next one adopts the queued task instances by that id. One
task instance is queued per scheduler loop (``max_tis_per_query`` 1), so every kill strands a different one.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.local.cli import wait_for_run, wait_items_final
from harness.local.procs import wait_until
from harness.local.stack import LocalStack, StackOptions
from tests.e2e.conftest import ecs_tasks_per_try, processes_started_per_try

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

DAG_ID = "ecs_event_crash_window"
DAGS = Path(__file__).resolve().parent / "dags"
HOOK = Path(__file__).resolve().parent / "crash_hook"
KILLS = 10
TASKS = 12
RUN_TIMEOUT = 300
# R10's mutation check runs this module with R10_MUTATION=no-adoption (the executor adopts nothing): it must fail.
MUTATION = os.environ.get("R10_MUTATION", "")


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("r10")


@pytest.fixture(scope="module")
def stack(crash_dir: Path) -> Iterator[LocalStack]:
    config = {
        # A killed scheduler's job is declared dead 4 s after its last heartbeat, so the next one adopts at start.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "4",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "2",
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "1",
        "PYTHONPATH": str(HOOK),
        "R10_CRASH_DIR": str(crash_dir),
        "R10_CRASH_LIMIT": str(KILLS),
        "R10_MUTATION": MUTATION,
    }
    with LocalStack(StackOptions(dags_folder=DAGS, airflow_config=config, concurrency=4)) as running:
        running.wait_dag(DAG_ID)
        yield running


def kills(crash_dir: Path) -> list[dict[str, Any]]:
    path = crash_dir / "kills.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_scheduler_killed_after_send_never_starts_a_second_task(
    stack: LocalStack, crash_dir: Path, figure: Callable[[str], None]
) -> None:
    started = time.monotonic()
    run_id = stack.trigger(DAG_ID, "e2e_crash_window")
    restarts = 0
    while len(kills(crash_dir)) < KILLS:
        scheduler = stack.processes["scheduler"]
        wait_until(
            scheduler.exit_reason, timeout=RUN_TIMEOUT, what=f"kill {len(kills(crash_dir)) + 1} of {KILLS}"
        )
        # SIGKILLed by the hook: clear what is left of its process group, start the next scheduler.
        stack.kill_scheduler()
        stack.start_scheduler()
        restarts += 1
    killed_at = time.monotonic() - started
    state = wait_for_run(stack, DAG_ID, run_id, timeout=RUN_TIMEOUT, show=False)
    wait_items_final(stack, DAG_ID, run_id, timeout=60)

    stranded: dict[
        str, str
    ] = {}  # launch id -> the owner (scheduler) that sent it and was killed right after
    for kill in kills(crash_dir):
        stranded.update(kill["launches"])
    per_try = ecs_tasks_per_try(stack, run_id)
    per_task = Counter[tuple[object, ...]]()
    for (task_id, map_index, _try), count in per_try.items():
        per_task[(task_id, map_index)] += count
    processes = processes_started_per_try(stack, run_id)
    tis = stack.task_instances(DAG_ID, run_id)
    succeeded = [ti for ti in tis if ti["state"] == "success" and ti["try_number"] == 1]
    second_tasks = sum(count - 1 for count in per_task.values())
    # Adopted in flight: the next scheduler moved the launch to itself (a finished one is reported, not moved).
    owners = {item.launch_id: item.owner for item in stack.items()}
    adopted = [
        launch_id for launch_id, owner in stranded.items() if owners.get(launch_id) not in (None, owner)
    ]
    figure(
        f"R10 scheduler SIGKILLed between SendMessageBatch and its commit, {len(kills(crash_dir))} times (real "
        f"Airflow): {second_tasks} second ECS tasks; {len(stranded)} launches stranded by the kills, "
        f"{len(adopted)} adopted in flight by the next scheduler; {len(succeeded)} of {TASKS} tries succeeded "
        f"({sum(per_try.values())} ECS tasks and {sum(processes.values())} task processes for {TASKS} task "
        f"instances; kills done in {killed_at:.0f} s, {restarts} restarts)"
    )
    assert len(stranded) >= KILLS, kills(crash_dir)
    # Airflow resets an orphaned task instance nobody adopted: its next try is a second launch, a second task.
    assert second_tasks == 0, per_try
    assert set(processes.values()) == {1} and len(processes) == TASKS, processes
    assert state == "success" and len(succeeded) == TASKS, tis
    # The tasks outlive a restart: most stranded launches must still be in flight when the next scheduler starts,
    # or the test would not prove adoption.
    assert len(adopted) >= KILLS // 2, (adopted, stranded)
