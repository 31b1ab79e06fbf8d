"""check_health covers the whole path: ECS accepts the launcher's RunTask and ECS events reach the status function
(the launcher and the status function note both in the heartbeat item), besides the table, queue and reconciler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from ecs_event_executor.control.health import (
    EVENT_SEEN_AT,
    EVENTS_LATE_AFTER_SECONDS,
    RUN_TASK_OK_AT,
    HealthNotes,
)
from ecs_event_executor.control.status_tracking import StatusSettings, StatusTracker
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.executor import EcsEventExecutor, EcsEventExecutorError

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import REGION, CallCounter, LambdaContextStub, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import deliver, launch
from tests.support.requests import launch_request

pytestmark = pytest.mark.compat


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Point ``[ecs_event_executor]`` at the control plane's table and queue; the reconciler's heartbeat is fresh."""
    for key, value in {
        "QUEUE_URL": control_plane.queue_url,
        "TABLE_NAME": control_plane.table,
        "REGION_NAME": REGION,
        "CONN_ID": "none",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__ECS_EVENT_EXECUTOR__{key}", value)
    TaskTable(control_plane.table).write_heartbeat(last_checked=0)
    yield Clock()


def _check(clock: Clock) -> None:
    executor = EcsEventExecutor(client_factory=lambda s: boto3.client(s, region_name=REGION), clock=clock)
    executor.check_health()


def _deny_run_task(client: Any) -> None:
    def denied(**_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecs:RunTask"}
        return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    client.meta.events.register("before-call.ecs.RunTask", denied)


def test_run_task_refused_fails_the_health_check_naming_it(control_plane: ControlPlane, clock: Clock) -> None:
    _check(clock)  # nothing known wrong yet
    _deny_run_task(launcher_handler.launcher().ecs)
    request = launch_request("denied")
    launcher_handler.handler(body_event([request.to_json()], control_plane.queue_arn), LambdaContextStub())
    with pytest.raises(
        EcsEventExecutorError, match=r"ECS refused the launcher's RunTask .*AccessDeniedException"
    ):
        _check(clock)
    # Fixed (the role is granted RunTask again): the next launch notes it and the check passes.
    launcher_handler.reset()
    launch(control_plane)
    _check(clock)


def test_events_not_reaching_the_status_function_fail_the_health_check(
    control_plane: ControlPlane, clock: Clock
) -> None:
    """The rule delivers no event while a task runs, so silence alone says nothing; the reconciler finishing a
    task from ECS's answer, with no event reaching the status function for a while before, does."""
    _, task = launch(control_plane)
    _check(clock)  # a running task sends no event: nothing known wrong
    clock.now += EVENTS_LATE_AFTER_SECONDS + 60
    _check(clock)
    # Its stop event never arrives; the reconciler applies ECS's answer and notes it.
    reconciler_tracker = StatusTracker(
        StatusSettings.from_env(control_plane.env),
        table=TaskTable(control_plane.table, clock=clock),
        health=HealthNotes(clock, reconciler=True),
    )
    stopped = task_event(
        task, last_status="STOPPED", version=6, exit_code=0, stop_code="EssentialContainerExited"
    )
    assert reconciler_tracker.handle(stopped).value == "Finished"
    with pytest.raises(EcsEventExecutorError, match="the reconciler finished a task whose ECS events never"):
        _check(clock)
    # Events arrive again (the rule was fixed): the status function notes one and the check passes.
    _, other = launch(control_plane, task_id="other")
    status_handler._tracker = StatusTracker(
        StatusSettings.from_env(control_plane.env), health=HealthNotes(clock)
    )
    assert deliver([task_event(other, last_status="STOPPING", version=4, exit_code=0)]) == []
    _check(clock)


def test_health_notes_cost_a_write_a_minute_not_one_per_event(
    control_plane: ControlPlane, clock: Clock
) -> None:
    tasks = [launch(control_plane, task_id=f"t{i}")[1] for i in range(5)]
    ddb = CallCounter()
    ddb.attach(status_handler.tracker().table.client)
    assert deliver([task_event(t, last_status="RUNNING", version=2) for t in tasks]) == []
    heartbeat = TaskTable(control_plane.table).read_heartbeat()
    assert heartbeat is not None and EVENT_SEEN_AT in heartbeat and RUN_TASK_OK_AT in heartbeat
    # One UpdateItem per event (its state) plus one heartbeat note for the batch, not one per event.
    assert ddb.calls["UpdateItem"] == len(tasks) + 1
