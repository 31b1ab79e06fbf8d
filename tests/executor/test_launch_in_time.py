"""Issue 14, executor side: the launch deadline is the workload token's expiry less a margin; a launch not started
in time is handed back to Airflow's requeue; pre-assigned external ids make a crashed scheduler's launch adoptable."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecs_event_executor.airflow_compat import token_expiry, token_lifetime_option
from ecs_event_executor.control.messages import LaunchRequest
from ecs_event_executor.executor import AIRFLOW_VERSION, EcsEventExecutor

from tests.executor.conftest import (
    ExecutorEnv,
    StandInControlPlane,
    airflow_3_only,
    execute_task,
    make_ti,
    queue_all,
    task_workload,
)

pytestmark = pytest.mark.compat


def jwt_with(claims: dict[str, Any]) -> str:
    """Return an unsigned-looking JWT carrying ``claims`` (the executor never verifies it)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS512', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def workload_with_token(token: str, run_id: str = "manual__2026-11-25", **ti_fields: Any) -> Any:
    workload = execute_task(make_ti(run_id, **ti_fields))
    workload.token = token
    return workload


def test_token_expiry_reads_the_exp_claim_without_verifying() -> None:
    assert token_expiry(jwt_with({"exp": 1_900_000_000})) == datetime.fromtimestamp(1_900_000_000, UTC)
    assert token_expiry(jwt_with({"sub": "x"})) is None
    assert token_expiry("not-a-jwt") is None
    assert token_expiry(None) is None


@airflow_3_only("workload token (its deadline is task_queued_timeout: test_airflow_2_11.py)")
def test_the_launch_deadline_is_the_token_expiry_less_the_start_margin(
    executor_env: ExecutorEnv, control: StandInControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token was created before the executor saw the workload: its expiry, not queue time, bounds the start."""
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_START_MARGIN_SECONDS", "150")
    executor = executor_env.executor()
    expires = int(executor_env.clock.now) + 400  # the scheduler made the token 200 s before this loop
    queue_all(executor, [workload_with_token(jwt_with({"exp": expires, "sub": "ti"}))])
    (request,) = control.deliver()
    assert isinstance(request, LaunchRequest)
    assert request.launch_deadline == datetime.fromtimestamp(expires, UTC) - timedelta(seconds=150)


def test_without_an_exp_claim_the_deadline_is_queued_timeout_less_the_default_margin(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    queue_all(executor, [workload_with_token("opaque")])
    (request,) = control.deliver()
    assert isinstance(request, LaunchRequest) and request.launch_deadline is not None
    assert executor.settings.launch_start_margin_seconds >= 120
    assert request.launch_deadline == request.queued_at + timedelta(
        seconds=executor.settings.task_queued_timeout_seconds - executor.settings.launch_start_margin_seconds
    )


def test_an_expired_launch_is_handed_back_not_failed(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    """The try is not used up: no failed event; the key stays queued for Airflow's stuck-in-queued revoke."""
    executor = executor_env.executor()
    workload = task_workload()
    queue_all(executor, [workload])
    (request,) = control.deliver()
    executor.get_event_buffer()
    control.table.expire_launch(request.launch_id, 1, reason="not started: the launch deadline passed")
    executor.sync()
    assert executor.get_event_buffer() == {}
    assert request.launch_id not in executor.tracked_launches
    assert workload.ti.key in executor.running
    assert any("handed back" in (e.extra or "") for e in executor._task_event_logs)
    # The scheduler's stuck-in-queued path then revokes it and requeues the try.
    executor.revoke_task(ti=workload.ti)
    assert workload.ti.key not in executor.running


def _skip_without_external_executor_id() -> None:
    from airflow.executors import workloads

    if "external_executor_id" not in workloads.TaskInstance.model_fields:
        pytest.skip("this Airflow's workloads carry no external_executor_id (3.1): nothing is pre-assigned")


@airflow_3_only("pre-assigned external executor id")
def test_the_pre_assigned_external_id_is_the_launch_id(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    _skip_without_external_executor_id()
    assert EcsEventExecutor.pre_assigns_external_executor_id is True
    executor = executor_env.executor()
    pre_assigned = str(uuid.uuid4())
    queue_all(executor, [workload_with_token("t", external_executor_id=pre_assigned)])
    (request,) = control.deliver()
    assert request.launch_id == pre_assigned


@airflow_3_only("pre-assigned external executor id")
def test_a_queued_try_whose_launch_is_not_applied_yet_is_adopted_not_requeued(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    """The old scheduler sent the launch and died; the launcher has not created the item yet. Adopting it (rather
    than letting Airflow queue a second launch) means its task, once started, is this try's only one."""
    _skip_without_external_executor_id()
    old = executor_env.executor(job_id=1)
    pre_assigned = str(uuid.uuid4())
    queue_all(old, [workload_with_token("t", external_executor_id=pre_assigned)])
    ti = make_ti(external_executor_id=pre_assigned)
    ti.state = "queued"

    new = executor_env.executor(job_id=2)
    assert new.try_adopt_task_instances([ti]) == []
    assert new.tracked_launches == {pre_assigned: ti.key}
    # The launch message is applied now, under the old owner; the new executor moves it and sees it finish.
    launches = [m for m in control.deliver() if isinstance(m, LaunchRequest)]
    assert [m.launch_id for m in launches] == [pre_assigned]
    new._reconcile()  # the safety-net read finds it under the old owner and moves it
    control.deliver()
    item = control.table.get(pre_assigned)
    assert item is not None and item.owner == new.owner
    control.ecs(pre_assigned, "SUCCEEDED", exit_code=0)
    new.sync()
    assert new.get_event_buffer() == {ti.key: ("success", None)}


def test_a_margin_longer_than_the_token_has_left_takes_only_half_of_it(
    executor_env: ExecutorEnv, control: StandInControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With task_queued_timeout 20 s (the e2e tests') the default 180 s margin would refuse every launch."""
    section, key = token_lifetime_option(AIRFLOW_VERSION)  # 3.2+: task_queued_timeout
    monkeypatch.setenv(f"AIRFLOW__{section.upper()}__{key.upper()}", "20")
    executor = executor_env.executor()
    queue_all(executor, [workload_with_token("opaque")])
    (request,) = control.deliver()
    assert isinstance(request, LaunchRequest) and request.launch_deadline is not None
    assert request.launch_deadline == request.queued_at + timedelta(seconds=10)
