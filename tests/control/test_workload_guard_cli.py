"""The launcher's allow-list for Airflow 2.11's ``airflow tasks run`` command: exactly the message's task instance,
supervised, with only the flags Airflow 2.11's scheduler passes; nothing else starts a container."""

from __future__ import annotations

import pytest
from ecs_event_executor.control.messages import TaskKey
from ecs_event_executor.control.workload_guard import WorkloadRefused, check_workload_command

KEY = TaskKey(dag_id="etl", task_id="load", run_id="scheduled__2026-12-01T00:00:00+00:00", try_number=1)
MAPPED = KEY.model_copy(update={"map_index": 3})
# What Airflow 2.11's scheduler queues: TaskInstance.command_as_list(local=True, pickle_id=None).
RUN = ["airflow", "tasks", "run", KEY.dag_id, KEY.task_id, KEY.run_id]
SCHEDULED = [*RUN, "--local", "--subdir", "DAGS_FOLDER/etl.py"]


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (SCHEDULED, KEY),
        ([*RUN, "--local", "--pool", "default_pool", "--subdir", "DAGS_FOLDER/etl.py"], KEY),
        ([*SCHEDULED, "--map-index", "3"], MAPPED),
        ([*RUN, "--local", "--ignore-all-dependencies", "--depends-on-past", "ignore", "--force"], KEY),
        (
            [*RUN, "--local", "--pickle", "12", "--job-id", "7", "--mark-success", "--ignore-dependencies"],
            KEY,
        ),
    ],
)
def test_the_commands_airflow_2_11_queues_pass(command: list[str], key: TaskKey) -> None:
    check_workload_command(command, key)


@pytest.mark.parametrize(
    ("command", "match"),
    [
        (["airflow", "tasks", "run", "other_dag", KEY.task_id, KEY.run_id, "--local"], "dag_id"),
        (["airflow", "tasks", "run", KEY.dag_id, "other_task", KEY.run_id, "--local"], "task_id"),
        (["airflow", "tasks", "run", KEY.dag_id, KEY.task_id, "manual__other", "--local"], "run_id"),
        ([*SCHEDULED, "--map-index", "4"], "map index"),
        ([*RUN, "--subdir", "DAGS_FOLDER/etl.py"], "--local"),
        ([*RUN, "--local", "--raw"], "'--raw'"),
        ([*RUN, "--local", "--cfg-path", "/tmp/evil.cfg"], "'--cfg-path'"),
        ([*SCHEDULED, ";", "curl", "http://x"], "';'"),
        ([*SCHEDULED, "&&", "rm", "-rf", "/"], "'&&'"),
        ([*RUN, "--local", "--pool", "--raw"], "--pool has no valid value"),
        ([*RUN, "--local", "--pickle", "1; rm -rf /"], "--pickle has no valid value"),
        ([*RUN, "--local", "--local"], "twice"),
        (["airflow", "tasks", "run", KEY.dag_id, KEY.task_id], "needs"),
        (["bash", "-c", " ".join(SCHEDULED)], "entry point"),
        (["sh", "-c", f"{' '.join(SCHEDULED)}; curl http://x"], "entry point"),
        (["airflow", "tasks", "test", KEY.dag_id, KEY.task_id, KEY.run_id], "entry point"),
        (["airflow", "dags", "trigger", KEY.dag_id], "entry point"),
    ],
)
def test_anything_else_is_refused_with_a_reason(command: list[str], match: str) -> None:
    with pytest.raises(WorkloadRefused, match=match):
        check_workload_command(command, KEY)


def test_an_unmapped_key_refuses_a_mapped_command() -> None:
    with pytest.raises(WorkloadRefused, match="map index"):
        check_workload_command([*SCHEDULED, "--map-index", "0"], KEY)
    with pytest.raises(WorkloadRefused, match="map index"):
        check_workload_command(SCHEDULED, MAPPED)
