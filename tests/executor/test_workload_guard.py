"""The launcher's allow-list accepts exactly what the executor builds from a real Airflow workload."""

from __future__ import annotations

import pytest
from ecs_event_executor.airflow_compat import task_key_of, workload_command
from ecs_event_executor.control.workload_guard import WorkloadRefused, check_workload_command

from tests.executor.conftest import AIRFLOW_2, task_workload

pytestmark = [
    pytest.mark.compat,
    # 2.11's CLI command against the guard: tests/control/test_workload_guard_cli.py and test_airflow_2_11.py.
    pytest.mark.skipif(AIRFLOW_2, reason="Airflow 2.11 has no workloads (execute_workload JSON)"),
]


def test_the_executors_command_for_a_real_workload_passes_the_guard() -> None:
    workload = task_workload(try_number=2)
    key = task_key_of(workload.ti.key)
    check_workload_command(workload_command(workload), key)


def test_a_real_workload_for_another_try_is_refused() -> None:
    workload = task_workload(try_number=2)
    other = task_key_of(task_workload(try_number=3).ti.key)
    with pytest.raises(WorkloadRefused, match=r"ti\.try_number"):
        check_workload_command(workload_command(workload), other)
