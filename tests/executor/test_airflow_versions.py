"""Issue 18: the supported Airflow range, and what differs between 2.11, 3.1, 3.2 and 3.3 (airflow_compat).

These run in every compat virtualenv (make test-compat), each a real install of one Airflow version; a test whose
expectation depends on the version reads it from ``ecs_event_executor.executor.AIRFLOW_VERSION``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from ecs_event_executor.airflow_compat import (
    SUPPORTED_AIRFLOW_RANGE,
    UnsupportedAirflowVersion,
    check_airflow_version,
    task_key_of,
    token_lifetime_option,
)
from ecs_event_executor.control.messages import LaunchRequest
from ecs_event_executor.executor import AIRFLOW_VERSION
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.executor.conftest import (
    AIRFLOW_2,
    ExecutorEnv,
    StandInControlPlane,
    airflow_3_only,
    queue_all,
    task_workload,
)

pytestmark = pytest.mark.compat


@pytest.mark.parametrize(
    "version", ["2.11.0", "2.11.2", "3.1.0", "3.1.8", "3.2.2", "3.3.2", "3.3.0rc1", "3.3.3.dev0"]
)
def test_supported_versions_are_accepted(version: str) -> None:
    assert check_airflow_version(version) == Version(version)


@pytest.mark.parametrize("version", ["2.10.5", "2.9.3", "3.0.6", "3.4.0", "3.4.0rc1", "4.0.0"])
def test_other_versions_are_refused_at_import_naming_the_range(version: str) -> None:
    with pytest.raises(UnsupportedAirflowVersion) as raised:
        check_airflow_version(version)
    assert SUPPORTED_AIRFLOW_RANGE in str(raised.value) and version in str(raised.value)
    # An ImportError: `import ecs_event_executor.executor` (what Airflow's executor loader does) fails with it.
    assert isinstance(raised.value, ImportError)


def test_the_installed_airflow_is_in_the_declared_range() -> None:
    """pyproject's apache-airflow requirement and the import-time check say the same range."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    (airflow,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "apache-airflow"]
    assert airflow.specifier == SpecifierSet(SUPPORTED_AIRFLOW_RANGE)
    assert Version(AIRFLOW_VERSION.base_version) in airflow.specifier


def test_token_lifetime_option_follows_what_each_version_signs_with() -> None:
    # 2.11 has no token: the scheduler takes a task back after task_queued_timeout.
    assert token_lifetime_option(Version("2.11.2")) == ("scheduler", "task_queued_timeout")
    assert token_lifetime_option(Version("3.1.8")) == ("execution_api", "jwt_expiration_time")
    assert token_lifetime_option(Version("3.2.0")) == ("scheduler", "task_queued_timeout")
    assert token_lifetime_option(Version("3.3.2")) == ("scheduler", "task_queued_timeout")


def test_callback_keys_of_both_shapes_map_to_the_callback_task_key() -> None:
    """3.2: CallbackKey is the id string; 3.3: an object with ``.id``. Both give the same contract key."""

    class CallbackKey:
        id = "0b6f3c1e-5d2a-4f4e-9a43-3c9d1f0e7a11"

    by_string = task_key_of(CallbackKey.id)
    assert by_string == task_key_of(CallbackKey())
    assert by_string.task_id == CallbackKey.id


def test_without_an_exp_claim_the_deadline_follows_the_versions_token_lifetime(
    executor_env: ExecutorEnv, control: StandInControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3.1 signs tokens for [execution_api] jwt_expiration_time, 3.2+ for [scheduler] task_queued_timeout."""
    monkeypatch.setenv("AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME", "400")
    monkeypatch.setenv("AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT", "1200")
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_START_MARGIN_SECONDS", "100")
    executor = executor_env.executor()
    workload = task_workload()
    workload.token = "opaque"
    queue_all(executor, [workload])
    (request,) = control.deliver()
    assert isinstance(request, LaunchRequest) and request.launch_deadline is not None
    # 2.11 has no token at all: the scheduler takes the task back after task_queued_timeout.
    lifetime = 1200 if AIRFLOW_2 or AIRFLOW_VERSION.release[:2] >= (3, 2) else 400
    assert request.launch_deadline == request.queued_at + timedelta(seconds=lifetime - 100)


@airflow_3_only("workload types (2.11's unrunnable command: test_airflow_2_11.py)")
def test_a_workload_the_executor_cannot_run_fails_with_a_reason_never_vanishes(
    executor_env: ExecutorEnv,
) -> None:
    """A workload type this executor does not run is reported failed (with why) and leaves no queue entry."""
    executor = executor_env.executor()
    good = task_workload("good")

    class UnknownWorkload:
        key = good.ti.key.with_try_number(7)

        def model_dump_json(self) -> str:
            return "{}"

    unknown: Any = UnknownWorkload()
    executor.queued_tasks[unknown.key] = unknown
    executor._process_workloads([unknown, good])
    state, info = executor.get_event_buffer()[unknown.key]
    assert state == "failed"
    assert "cannot run" in info and "UnknownWorkload" in info
    assert unknown.key not in executor.queued_tasks
    # The other workload of the batch still launched.
    assert good.ti.key in executor.running and len(executor.tracked_launches) == 1
