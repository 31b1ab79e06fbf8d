"""The reconciler: lost events are recovered from ECS, forgotten tasks fail with a reason, lost launches relaunch."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from ecs_event_executor.control import bus
from ecs_event_executor.control.launching import Launcher, LauncherSettings, RetryLater
from ecs_event_executor.control.messages import parse_message
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.tasks.item import EcsSnapshot
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.schema import STALE_SHARDS, Attr, active_shard
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import (
    REGION,
    CallCounter,
    EventuallyConsistentDescribeTasks,
    LambdaContextStub,
    apply_input_path_detail,
    body_event,
)
from tests.support.ecs_world import EcsWorld
from tests.support.requests import launch_request

LATER = 3600.0  # the reconciler's clock runs an hour ahead, so every item looks stale


def launch_many(cp: ControlPlane, n: int, **fields: Any) -> list[str]:
    requests = [launch_request(f"t{i}", **fields) for i in range(n)]
    for start in range(0, n, 10):
        batch = [r.to_json() for r in requests[start : start + 10]]
        launcher_handler.handler(body_event(batch, cp.queue_arn), LambdaContextStub())
    return [r.launch_id for r in requests]


class Clock:
    """Wall-clock time shifted by ``ahead`` seconds; tests move it forward between passes."""

    def __init__(self, ahead: float = 0.0) -> None:
        self.ahead = ahead

    def __call__(self) -> float:
        return time.time() + self.ahead


def reconciler(cp: ControlPlane, *, ahead: float = LATER, clock: Clock | None = None) -> Reconciler:
    env = dict(cp.env, STALE_AFTER_SECONDS="600")
    clock = clock or Clock(ahead)
    return Reconciler(ReconcilerSettings.from_env(env), table=TaskTable(cp.table, clock=clock), clock=clock)


def world_for(cp: ControlPlane, launch_ids: list[str], rec: Reconciler, scenario: str = "exit0") -> EcsWorld:
    world = EcsWorld().attach(rec.ecs)
    items = TaskTable(cp.table).get_many(launch_ids)
    arns = [items[i].task_arn for i in launch_ids]
    for task in cp.client("ecs").describe_tasks(cluster=cp.ecs.cluster, tasks=arns)["tasks"]:
        world.add(task, scenario)
    return world


def as_previous_version(cp: ControlPlane, launch_ids: list[str], *, checked_ms: int = 0) -> None:
    """Put items in the stale index as the previous version did for every active item (``active``, ``checked_at``)."""
    for launch_id in launch_ids:
        cp.client("dynamodb").update_item(
            TableName=cp.table,
            Key={Attr.PK: {"S": launch_id}},
            UpdateExpression="SET #a = :a, #c = :c",
            ExpressionAttributeNames={"#a": Attr.ACTIVE, "#c": Attr.CHECKED_AT},
            ExpressionAttributeValues={":a": {"S": active_shard(launch_id)}, ":c": {"N": str(checked_ms)}},
        )


def raw_item(cp: ControlPlane, launch_id: str) -> dict[str, Any]:
    return dict(
        cp.client("dynamodb").get_item(
            TableName=cp.table, Key={Attr.PK: {"S": launch_id}}, ConsistentRead=True
        )["Item"]
    )


def backing_off(cp: ControlPlane, n: int, *, retry_in_seconds: float = 900) -> list[str]:
    """Create ``n`` launches that released their lease to retry later: the stale index holds them."""
    table = TaskTable(cp.table)
    requests = [launch_request(f"t{i}", deadline_in=None) for i in range(n)]
    for request in requests:
        table.create_for_launch(request, lease_seconds=60)
        table.release_lease(request.launch_id, 1, reason="throttled", retry_in_seconds=retry_in_seconds)
    return [r.launch_id for r in requests]


def test_lost_final_event_is_recovered_from_ecs(control_plane: ControlPlane) -> None:
    [launch_id] = launch_many(control_plane, 1)
    rec = reconciler(control_plane)
    world = world_for(control_plane, [launch_id], rec)
    events = world.run_to_end(next(iter(world.tasks)))
    for event in events[:-2]:  # the STOPPING and STOPPED events are lost
        status_handler.handler(event, LambdaContextStub())
    assert TaskTable(control_plane.table).get(launch_id).state is TaskState.RUNNING  # type: ignore[union-attr]
    report = rec.run()
    assert (report.checked, report.updated, report.describe_calls) == (1, 1, 1)
    final = TaskTable(control_plane.table).get(launch_id)
    assert final is not None and final.state is TaskState.SUCCEEDED and final.exit_code == 0


def test_task_ecs_forgot_fails_with_a_reason_after_two_missing_answers_minutes_apart(
    control_plane: ControlPlane,
) -> None:
    """An item the previous version put in the stale index is still checked as it was; a new item whose task ECS
    forgot before any pass saw it is not found (the documented limit: README, Reliability)."""
    [launch_id] = launch_many(control_plane, 1)
    as_previous_version(control_plane, [launch_id])
    clock = Clock(LATER)
    rec = reconciler(control_plane, clock=clock)
    world = world_for(control_plane, [launch_id], rec)
    world.run_to_end(next(iter(world.tasks)))  # every event lost
    world.forget_stopped()
    # One MISSING answer is not a verdict (DescribeTasks is eventually consistent): noted, asked again.
    first = rec.run()
    assert (first.missing, first.lost) == (1, 0)
    item = TaskTable(control_plane.table).get(launch_id)
    assert item is not None and item.state is TaskState.PENDING and item.missing_since is not None
    # A pass a minute later still waits; the next scheduled one (5 minutes) decides.
    clock.ahead += 60
    assert rec.run().lost == 0
    clock.ahead += 240
    assert rec.run().lost == 1
    final = TaskTable(control_plane.table).get(launch_id)
    assert final is not None and final.state is TaskState.FAILED
    assert "ECS no longer knows the task" in (final.reason or "")


def test_missing_right_after_launch_does_not_fail_a_running_task(control_plane: ControlPlane) -> None:
    """DescribeTasks answers MISSING for a task it does not show yet; the next pass finds it running (items of the
    previous version: a new item's running task is never described)."""
    launch_ids = launch_many(control_plane, 3)
    clock = Clock(LATER)
    rec = reconciler(control_plane, clock=clock)
    world = world_for(control_plane, launch_ids, rec)
    for arn in world.tasks:
        for _ in range(3):
            status_handler.handler(world.step(arn), LambdaContextStub())  # PROVISIONING..RUNNING
    as_previous_version(control_plane, launch_ids)
    lag = EventuallyConsistentDescribeTasks(misses=1).attach(rec.ecs)
    first = rec.run()
    assert (first.missing, first.lost) == (3, 0) and lag.served == 3
    clock.ahead += 300
    second = rec.run()
    assert (second.checked, second.unchanged, second.lost) == (3, 3, 0)
    items = TaskTable(control_plane.table).get_many(launch_ids).values()
    # Found: the first answer is forgotten, so a later MISSING starts counting again.
    assert all(i.state is TaskState.RUNNING and i.missing_since is None for i in items)


def test_other_describe_failures_are_not_lost(control_plane: ControlPlane) -> None:
    [launch_id] = launch_many(control_plane, 1)
    as_previous_version(control_plane, [launch_id])
    clock = Clock(LATER)
    rec = reconciler(control_plane, clock=clock)

    def access_denied(parsed: dict[str, Any], **_: Any) -> None:
        parsed["failures"] = [{"arn": t["taskArn"], "reason": "ACCESS_DENIED"} for t in parsed["tasks"]]
        parsed["tasks"] = []

    rec.ecs.meta.events.register("after-call.ecs.DescribeTasks", access_denied)
    for _ in range(3):
        report = rec.run()
        assert (report.lost, report.missing, report.unchanged) == (0, 0, 1)
        clock.ahead += 600
    item = TaskTable(control_plane.table).get(launch_id)
    assert item is not None and item.state is TaskState.PENDING


def test_launch_recorded_after_a_long_wait_leaves_the_stale_index(control_plane: ControlPlane) -> None:
    """A launch throttled for 11 minutes is in the stale index while it backs off, and leaves it when RunTask
    returns: from then on ECS lists its task, and the reconciler neither reads nor describes it while it runs."""
    clock = Clock(0.0)
    table = TaskTable(control_plane.table, clock=clock)
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=clock)
    request = launch_request(deadline_in=None)
    throttled = [True]

    def throttle_once(**_: Any) -> Any:
        if throttled.pop() if throttled else False:
            from botocore.awsrequest import AWSResponse

            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), error
        return None

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", throttle_once)
    with pytest.raises(RetryLater):
        launcher.handle(request.to_json(), receive_count=1)
    assert {Attr.ACTIVE, Attr.CHECKED_AT} <= raw_item(control_plane, request.launch_id).keys()
    clock.ahead = 660.0
    launcher.handle(request.to_json(), receive_count=2)
    item = table.get(request.launch_id)
    assert item is not None and item.state is TaskState.PENDING
    assert not {Attr.ACTIVE, Attr.CHECKED_AT} & raw_item(control_plane, request.launch_id).keys()
    rec = reconciler(control_plane, clock=Clock(662.0))
    EventuallyConsistentDescribeTasks(misses=1).attach(rec.ecs)
    report = rec.run()
    assert (report.checked, report.describe_calls, report.lost, report.missing) == (0, 0, 0, 0)


def test_launch_writes_no_stale_index_entry(control_plane: ControlPlane) -> None:
    [launch_id] = launch_many(control_plane, 1)
    item = TaskTable(control_plane.table).get(launch_id)
    assert item is not None and item.state is TaskState.PENDING
    assert not {Attr.ACTIVE, Attr.CHECKED_AT} & raw_item(control_plane, launch_id).keys()


def test_relaunch_enters_the_stale_index(control_plane: ControlPlane) -> None:
    request = launch_request(max_attempts=3)
    earlier = TaskTable(control_plane.table, clock=lambda: time.time() - LATER)
    earlier.create_for_launch(request, lease_seconds=60)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/airflow/0123456789abcdef0123456789abcdef"
    earlier.record_launched(request.launch_id, 1, task_arn=arn, cluster_arn=None)
    table = TaskTable(control_plane.table)
    before = int(time.time() * 1000)
    snap = EcsSnapshot(TaskState.FAILED, arn, 2, "STOPPED", reason="CannotPullContainerError")
    relaunched, item = table.schedule_relaunch(request.launch_id, 1, snap)
    assert relaunched and item is not None and item.attempt == 2
    assert item.checked_at is not None and item.checked_at >= before
    assert raw_item(control_plane, request.launch_id)[Attr.ACTIVE] == {"S": active_shard(request.launch_id)}


def test_launch_backing_off_is_not_relaunched(control_plane: ControlPlane) -> None:
    """Throttled for 20 minutes: each retry releases the lease, but the item says when it comes back."""
    clock = Clock(0.0)
    table = TaskTable(control_plane.table, clock=clock)
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=clock)
    request = launch_request(deadline_in=None)

    def throttled(**_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), error

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", throttled)
    rec = reconciler(control_plane, clock=clock)
    relaunched = 0
    receive_count = 1
    next_pass = 300.0
    while clock.ahead < 1800:
        try:
            launcher.handle(request.to_json(), receive_count=receive_count)
        except RetryLater as retry:
            clock.ahead += retry.delay_seconds  # the message comes back after its visibility timeout
        receive_count += 1
        if clock.ahead >= next_pass:
            relaunched += rec.run().relaunched
            next_pass += 300
    assert relaunched == 0
    item = table.get(request.launch_id)
    assert item is not None and item.state is TaskState.LAUNCHING and item.retry_at is not None


def test_running_tasks_cost_the_reconciler_nothing(control_plane: ControlPlane) -> None:
    """Tasks running for hours: no write, no item read, no DescribeTasks for them, pass after pass."""
    launch_ids = launch_many(control_plane, 3)
    clock = Clock(0.0)
    rec = reconciler(control_plane, clock=clock)
    world = world_for(control_plane, launch_ids, rec)
    for arn in world.tasks:
        for _ in range(3):
            status_handler.handler(
                world.step(arn), LambdaContextStub()
            )  # PROVISIONING..RUNNING, all delivered
    dynamodb = CallCounter().attach(rec.table.client)
    for _ in range(12):
        clock.ahead += 600
        report = rec.run()
        assert (report.checked, report.describe_calls, report.stopped_listed) == (0, 0, 0)
    # Per pass: the heartbeat read (where the last pass began) and write, one Query per stale-index shard.
    assert dynamodb.calls == {"GetItem": 12, "UpdateItem": 12, "Query": 12 * STALE_SHARDS}


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
    request = launch_request(max_attempts=2)
    # An hour ago the status handler scheduled a relaunch, and its publish was lost.
    earlier = TaskTable(control_plane.table, clock=lambda: time.time() - LATER)
    earlier.create_for_launch(request, lease_seconds=60)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/airflow/0123456789abcdef0123456789abcdef"
    earlier.record_launched(request.launch_id, 1, task_arn=arn, cluster_arn=None)
    snap = EcsSnapshot(TaskState.FAILED, arn, 2, "STOPPED", reason="CannotPullContainerError")
    assert earlier.schedule_relaunch(request.launch_id, 1, snap)[0]
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


def test_one_pass_covers_every_stale_item_and_stops_when_its_time_is_up(control_plane: ControlPlane) -> None:
    n = 250
    backing_off(control_plane, n, retry_in_seconds=900)
    # Pages of 100; RECONCILE_MAX_ITEMS was the former per-pass cap and is no longer read.
    env = dict(
        control_plane.env, STALE_AFTER_SECONDS="600", RECONCILE_PAGE_SIZE="100", RECONCILE_MAX_ITEMS="100"
    )
    clock = Clock(700)  # every item is stale, and each waits for its retry: left alone, but checked
    rec = Reconciler(
        ReconcilerSettings.from_env(env), table=TaskTable(control_plane.table, clock=clock), clock=clock
    )
    report = rec.run()
    assert (report.checked, report.backing_off, report.relaunched, report.out_of_time) == (n, n, 0, 0)
    assert report.pages >= 3  # about 100 keys a page, spread over the shards
    # With no time left after the first page, the pass stops there and says so.
    # (The deadline, then the stopped-task listing's check: in time; then the first page's: out of time.)
    ticks = iter([0, 0, *range(1000, 10_000, 1000)])
    short = Reconciler(rec.settings, table=rec.table, clock=clock, timer=lambda: float(next(ticks)))
    cut = short.run(time_budget_seconds=1)
    assert (cut.out_of_time, cut.pages) == (1, 1) and cut.checked < 150


def test_stale_index_is_sharded(control_plane: ControlPlane) -> None:
    launch_ids = backing_off(control_plane, 40)
    raw = [
        control_plane.client("dynamodb").get_item(TableName=control_plane.table, Key={Attr.PK: {"S": i}})[
            "Item"
        ]
        for i in launch_ids
    ]
    shards = {r[Attr.ACTIVE]["S"] for r in raw}
    assert shards == {active_shard(i) for i in launch_ids} and len(shards) > STALE_SHARDS // 2
    assert TaskTable(control_plane.table).active_items() != []
    assert {i.launch_id for i in TaskTable(control_plane.table).active_items()} == set(launch_ids)


def test_cost_follows_stale_items_and_heartbeat_is_written(control_plane: ControlPlane) -> None:
    backing_off(control_plane, 20)
    rec = reconciler(control_plane, ahead=0)  # nothing is stale yet
    dynamodb = CallCounter().attach(rec.table.client)
    ecs = CallCounter().attach(rec.ecs)
    report = rec.run()
    assert report.checked == 0
    # The heartbeat's read (where the last pass began), one Query per shard of the stale index, and the
    # heartbeat. The heartbeat is an update: it keeps the launcher's and the status function's notes (health.py).
    assert dynamodb.calls == {"GetItem": 1, "Query": STALE_SHARDS, "UpdateItem": 1}
    # ECS lists no stopped task: nothing to describe.
    assert ecs.calls == {"ListTasks": 1}
    heartbeat = rec.table.read_heartbeat()
    assert heartbeat is not None and heartbeat["heartbeat_at"] > 0 and heartbeat["last_checked"] == 0


def test_a_pass_reads_only_what_stopped_since_the_last_pass_began_less_the_overlap(
    control_plane: ControlPlane,
) -> None:
    """Stopped tasks stay listed for an hour: each is read by the first pass after it stops (and by one more when
    it stopped inside the overlap), not by every pass; after a gap longer than ECS's memory a pass reads all."""
    launch_ids = launch_many(control_plane, 4)
    clock = Clock(0.0)
    rec = reconciler(control_plane, clock=clock)
    world = world_for(control_plane, launch_ids, rec)
    world.clock = clock
    arns = list(world.tasks)
    for arn in arns[:3]:
        for event in world.run_to_end(arn):  # every event delivered: nothing is behind
            status_handler.handler(event, LambdaContextStub())
    clock.ahead += 300
    first = rec.run()  # a first pass reads every stopped task ECS lists
    assert (first.stopped_listed, first.stopped_read, first.updated) == (3, 3, 0)
    # One more stops (its events lost) a minute before the next pass: inside the overlap, so two passes read it.
    clock.ahead += 240
    world.run_to_end(arns[3])
    clock.ahead += 60
    again = rec.run()
    assert (again.stopped_listed, again.stopped_read, again.updated) == (4, 1, 1)
    clock.ahead += 300
    third = rec.run()
    assert (third.stopped_listed, third.stopped_read, third.updated) == (4, 1, 0)
    clock.ahead += 300
    assert rec.run().stopped_read == 0
    # A pass out of time does not move the window: the next one reads from where the last complete one began.
    clock.ahead += 300
    ticks = iter([0, 1000, 2000, 3000])
    cut = Reconciler(rec.settings, table=rec.table, clock=clock, timer=lambda: float(next(ticks)))
    assert cut.run(time_budget_seconds=1).out_of_time == 1
    # After more than ECS's memory without a complete pass, everything listed is read again.
    clock.ahead += 3600
    assert rec.run().stopped_read == 4
