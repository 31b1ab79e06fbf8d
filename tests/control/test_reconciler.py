"""The reconciler: lost events are recovered from ECS, forgotten tasks fail with a reason, lost launches relaunch."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from ecs_event_executor.control import bus
from ecs_event_executor.control.messages import parse_message
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import REGION, CallCounter, LambdaContextStub, apply_input_path_detail, body_event
from tests.support.ecs_world import EcsWorld
from tests.support.requests import launch_request

LATER = 3600.0  # the reconciler's clock runs an hour ahead, so every item looks stale


def launch_many(cp: ControlPlane, n: int, **fields: Any) -> list[str]:
    requests = [launch_request(f"t{i}", **fields) for i in range(n)]
    for start in range(0, n, 10):
        batch = [r.to_json() for r in requests[start : start + 10]]
        launcher_handler.handler(body_event(batch, cp.queue_arn), LambdaContextStub())
    return [r.launch_id for r in requests]


def reconciler(cp: ControlPlane, *, ahead: float = LATER) -> Reconciler:
    env = dict(cp.env, STALE_AFTER_SECONDS="600")
    clock = lambda: time.time() + ahead  # noqa: E731
    return Reconciler(ReconcilerSettings.from_env(env), table=TaskTable(cp.table, clock=clock), clock=clock)


def world_for(cp: ControlPlane, launch_ids: list[str], rec: Reconciler, scenario: str = "exit0") -> EcsWorld:
    world = EcsWorld().attach(rec.ecs)
    items = TaskTable(cp.table).get_many(launch_ids)
    arns = [items[i].task_arn for i in launch_ids]
    for task in cp.client("ecs").describe_tasks(cluster=cp.ecs.cluster, tasks=arns)["tasks"]:
        world.add(task, scenario)
    return world


def test_lost_final_event_is_recovered_from_ecs(control_plane: ControlPlane) -> None:
    [launch_id] = launch_many(control_plane, 1)
    rec = reconciler(control_plane)
    world = world_for(control_plane, [launch_id], rec)
    events = world.run_to_end(next(iter(world.tasks)))
    for event in events[:-2]:  # the DEPROVISIONING and STOPPED events are lost
        status_handler.handler(event, LambdaContextStub())
    assert TaskTable(control_plane.table).get(launch_id).state is TaskState.RUNNING  # type: ignore[union-attr]
    report = rec.run()
    assert (report.checked, report.updated, report.describe_calls) == (1, 1, 1)
    final = TaskTable(control_plane.table).get(launch_id)
    assert final is not None and final.state is TaskState.SUCCEEDED and final.exit_code == 0


def test_task_ecs_forgot_fails_with_a_reason(control_plane: ControlPlane) -> None:
    [launch_id] = launch_many(control_plane, 1)
    rec = reconciler(control_plane)
    world = world_for(control_plane, [launch_id], rec)
    world.run_to_end(next(iter(world.tasks)))  # every event lost
    world.forget_stopped()
    report = rec.run()
    assert report.lost == 1
    final = TaskTable(control_plane.table).get(launch_id)
    assert final is not None and final.state is TaskState.FAILED
    assert "ECS no longer knows the task" in (final.reason or "")


def test_unchanged_running_task_is_touched_not_rechecked(control_plane: ControlPlane) -> None:
    launch_ids = launch_many(control_plane, 3)
    rec = reconciler(control_plane)
    world = world_for(control_plane, launch_ids, rec)
    for arn in world.tasks:
        for _ in range(3):
            status_handler.handler(
                world.step(arn), LambdaContextStub()
            )  # PROVISIONING..RUNNING, all delivered
    first = rec.run()
    assert (first.checked, first.unchanged, first.updated) == (3, 3, 0)
    # Touched items are fresh again for the reconciler's clock: the next run checks nothing.
    second = rec.run()
    assert second.checked == 0 and second.describe_calls == 0


def test_launch_whose_message_was_lost_is_relaunched(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name="control-plane")
    pattern = {"source": [bus.SOURCE], "detail-type": [bus.RELAUNCH_REQUESTED]}
    events.put_rule(Name="relaunch", EventBusName="control-plane", EventPattern=json.dumps(pattern))
    events.put_targets(
        Rule="relaunch",
        EventBusName="control-plane",
        Targets=[{"Id": "q", "Arn": control_plane.queue_arn, "InputPath": "$.detail"}],
    )
    request = launch_request()
    # An hour ago a launcher claimed the launch and died before RunTask; then its message went to the DLQ.
    TaskTable(control_plane.table, clock=lambda: time.time() - LATER).create_for_launch(
        request, lease_seconds=60
    )
    env = dict(control_plane.env, EVENT_BUS_NAME="control-plane", STALE_AFTER_SECONDS="600")
    clock = lambda: time.time() + LATER  # noqa: E731
    rec = Reconciler(
        ReconcilerSettings.from_env(env), table=TaskTable(control_plane.table, clock=clock), clock=clock
    )
    assert rec.run().relaunched == 1
    sqs = control_plane.client("sqs")
    body = apply_input_path_detail(
        sqs.receive_message(QueueUrl=control_plane.queue_url)["Messages"][0]["Body"]
    )
    assert parse_message(body).kind == "relaunch"
    launcher_handler.handler(body_event([body], control_plane.queue_arn), LambdaContextStub())
    assert TaskTable(control_plane.table).get(request.launch_id).state is TaskState.PENDING  # type: ignore[union-attr]


def test_cost_follows_stale_items_and_heartbeat_is_written(control_plane: ControlPlane) -> None:
    launch_many(control_plane, 20)
    rec = reconciler(control_plane, ahead=0)  # nothing is stale yet
    dynamodb = CallCounter().attach(rec.table.client)
    ecs = CallCounter().attach(rec.ecs)
    report = rec.run()
    assert report.checked == 0
    assert dynamodb.calls == {"Query": 1, "PutItem": 1}
    assert ecs.total == 0
    heartbeat = rec.table.read_heartbeat()
    assert heartbeat is not None and heartbeat["heartbeat_at"] > 0 and heartbeat["last_checked"] == 0
