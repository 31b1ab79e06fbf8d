"""What each write costs: the task item stays under 1 KB, the launch request lives in a side item written once,
state changes leave the stale index alone, and steps that cannot change our state are not written."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from ecs_event_executor.control.bus import LAUNCH_FAILED, TASK_FINISHED, TASK_LAUNCHED, ControlPlaneBus
from ecs_event_executor.control.launching import Launcher, LauncherSettings, Result
from ecs_event_executor.control.messages import LaunchRequest, RelaunchRequest
from ecs_event_executor.control.status_tracking import StatusSettings, StatusTracker
from ecs_event_executor.control.tasks.item import HISTORY_LIMIT, EcsSnapshot, EventOutcome, TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.schema import (
    CHANGE_INDEX,
    HEARTBEAT_KEY,
    STALE_INDEX,
    Attr,
    request_key,
    table_definition,
)
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import REGION, CallCounter
from tests.support.ecs_events import task_event
from tests.support.handlers import launch, send
from tests.support.requests import launch_request

ARN = "arn:aws:ecs:eu-west-1:123456789012:task/airflow-ecs-event-executor/0123456789abcdef0123456789abcdef"
CLUSTER_ARN = "arn:aws:ecs:eu-west-1:123456789012:cluster/airflow-ecs-event-executor"
ACCOUNT = "123456789012"  # moto's default account


# ------------------------------------------------------------------- DynamoDB's item size, as AWS documents it


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":  # 3 bytes of overhead, 1 per element
        return 3 + sum(1 + _value_size(x) for x in v)
    if kind == "M":  # 3 bytes of overhead, 1 per element, plus the keys
        return 3 + sum(len(k.encode()) + 1 + _value_size(x) for k, x in v.items())
    raise AssertionError(f"unexpected type {kind}")


def item_size(raw: Mapping[str, Any]) -> int:
    """Bytes DynamoDB bills for an item: UTF-8 attribute names plus values (rounded up to 1 KB per write)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in raw.items())


def _index_writes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> int:
    """Index entries one table write puts, updates or deletes, as DynamoDB bills them: an entry appears or goes (1),
    its key changes (a delete and a put: 2), or a projected attribute changes (1)."""
    writes = 0
    for index in table_definition("t")["GlobalSecondaryIndexes"]:
        keys = [k["AttributeName"] for k in index["KeySchema"]]
        projected = {Attr.PK, *keys, *index["Projection"].get("NonKeyAttributes", [])}
        was = before is not None and all(k in before for k in keys)
        now = after is not None and all(k in after for k in keys)
        if was and now:
            assert before is not None and after is not None
            if any(before[k] != after[k] for k in keys):
                writes += 2
            elif any(before.get(a) != after.get(a) for a in projected):
                writes += 1
        elif was or now:
            writes += 1
    return writes


@dataclass
class WriteUnits:
    """Count the write units DynamoDB would bill for every task-table write moto answers (the heartbeat aside):
    the item's size before or after, whichever is larger, in 1 KB units, plus its index entries."""

    units: int = 0
    writes: list[tuple[str, int]] = field(default_factory=list)

    @contextlib.contextmanager
    def counting(self) -> Iterator[WriteUnits]:
        from moto.core.botocore_stubber import BotocoreStubber
        from moto.dynamodb.models import dynamodb_backends

        original = BotocoreStubber.__call__
        tally = self

        def raw(table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
            found = dynamodb_backends[ACCOUNT][REGION].get_item(table, dict(key))
            return None if found is None else dict(found.to_json()["Attributes"])

        def call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            operation = (request.headers.get("X-Amz-Target") or b"").decode().rpartition(".")[2]
            if operation not in ("PutItem", "UpdateItem"):
                return original(self, event_name, request, **kwargs)
            body = json.loads(request.body)
            key = body.get("Key") or {Attr.PK: body["Item"][Attr.PK]}
            if key[Attr.PK]["S"] == HEARTBEAT_KEY:
                return original(self, event_name, request, **kwargs)
            before = raw(body["TableName"], key)
            response = original(self, event_name, request, **kwargs)
            after = raw(body["TableName"], key)
            size = max(item_size(before or {}), item_size(after or {}), 1)
            units = -(-size // 1024) + (_index_writes(before, after) if after != before else 0)
            tally.units += units
            tally.writes.append((operation, units))
            return response

        BotocoreStubber.__call__ = call  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BotocoreStubber.__call__ = original  # type: ignore[method-assign]


def raw_item(cp: ControlPlane, pk: str) -> dict[str, Any]:
    resp = cp.client("dynamodb").get_item(TableName=cp.table, Key={Attr.PK: {"S": pk}}, ConsistentRead=True)
    return dict(resp["Item"])


def test_typical_finished_item_is_under_one_kilobyte(control_plane: ControlPlane) -> None:
    """Launched, running, failed with exit 1 and a reason: every write of its life is billed 1 WRU."""
    request = launch_request("a_typical_task_id", owner="default:scheduler-7f9c2b1a")
    table = TaskTable(control_plane.table)
    table.create_for_launch(request, lease_seconds=60)
    table.record_launched(request.launch_id, 1, task_arn=ARN, cluster_arn=CLUSTER_ARN)
    table.apply_ecs_event(
        request.launch_id,
        1,
        EcsSnapshot(TaskState.RUNNING, ARN, 4, "RUNNING", cluster_arn=CLUSTER_ARN),
    )
    reason = (
        "the Airflow container exited with code 1 (EssentialContainerExited - Essential container in task "
        "exited)"
    )
    written, item = table.apply_ecs_event(
        request.launch_id,
        1,
        EcsSnapshot(
            TaskState.FAILED,
            ARN,
            6,
            "DEPROVISIONING",
            cluster_arn=CLUSTER_ARN,
            reason=reason,
            stop_code="EssentialContainerExited",
            exit_code=1,
        ),
    )
    assert written and item is not None and item.state is TaskState.FAILED
    raw = raw_item(control_plane, request.launch_id)
    assert Attr.REQUEST not in raw
    size = item_size(raw)
    print(f"\ntypical finished item: {size} bytes")
    assert size < 1024
    # History is compact in storage, readable through TaskItem.
    assert [e["state"] for e in item.history] == ["LAUNCHING", "PENDING", "RUNNING", "FAILED"]
    assert item.history[1]["task"] == ARN.rsplit("/", 1)[-1]
    assert item.history[-1]["reason"] == reason[:120]


def test_history_reason_is_cut_but_the_item_keeps_the_whole_reason(control_plane: ControlPlane) -> None:
    request = launch_request()
    table = TaskTable(control_plane.table)
    table.create_for_launch(request, lease_seconds=60)
    long_reason = "x" * 1500
    _, item = table.fail_launch(request.launch_id, 1, reason=long_reason)
    assert item is not None and item.reason == long_reason
    assert item.history[-1]["reason"] == "x" * 120


def test_launch_request_lives_in_a_compressed_side_item_in_no_index(control_plane: ControlPlane) -> None:
    request = launch_request()
    table = TaskTable(control_plane.table)
    table.create_for_launch(request, lease_seconds=60)
    side = raw_item(control_plane, request_key(request.launch_id))
    assert set(side) == {Attr.PK, Attr.REQUEST, Attr.EXPIRES_AT}  # no owner, no active: in neither index
    stored = side[Attr.REQUEST]["B"]
    blob = base64.b64decode(stored) if isinstance(stored, str) else stored
    assert json.loads(zlib.decompress(blob)) == json.loads(request.to_json())
    # The request carries the workload's token: it expires an hour after the launch can no longer start.
    assert request.launch_deadline is not None
    assert int(side[Attr.EXPIRES_AT]["N"]) == int(request.launch_deadline.timestamp()) + 3600
    assert table.read_request(request.launch_id) == request
    assert table.read_request("no-such-launch-id") is None


def test_an_expired_launch_request_is_gone_before_dynamodb_deletes_it(control_plane: ControlPlane) -> None:
    request = launch_request(deadline_in=600)
    TaskTable(control_plane.table).create_for_launch(request, lease_seconds=60)
    later = TaskTable(control_plane.table, clock=lambda: time.time() + 600 + 3600 + 1)
    assert later.read_request(request.launch_id) is None
    without_deadline = launch_request("t2", deadline_in=None)
    TaskTable(control_plane.table).create_for_launch(without_deadline, lease_seconds=60)
    side = raw_item(control_plane, request_key(without_deadline.launch_id))
    assert int(side[Attr.EXPIRES_AT]["N"]) == int(without_deadline.queued_at.timestamp()) + 24 * 3600


def test_indexes_change_feed_by_change_time_stale_index_keys_only_by_check_time() -> None:
    indexes = {i["IndexName"]: i for i in table_definition("t")["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in indexes[CHANGE_INDEX]["KeySchema"]] == [Attr.OWNER, Attr.CHANGED_AT]
    assert [k["AttributeName"] for k in indexes[STALE_INDEX]["KeySchema"]] == [Attr.ACTIVE, Attr.CHECKED_AT]
    assert indexes[STALE_INDEX]["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_a_task_costs_six_write_units_and_writes_no_stale_index_entry(control_plane: ControlPlane) -> None:
    """Request 1 + claim 1 + launch record 1 + RUNNING 1 + the final write 1 with its change-feed entry 1 (5 once
    plain RUNNING is not delivered). The previous design added the stale-index entry at the claim and its removal
    at the final write: 8."""
    with WriteUnits().counting() as cost:
        launch_id, task = launch(control_plane)
        assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
        assert send(task_event(task, last_status="STOPPING", version=5, exit_code=0)) == "Finished"
        assert send(task_event(task, last_status="STOPPED", version=7, exit_code=0)) == "Stale"
    print(f"\nwrite units per task: {cost.units} ({cost.writes})")
    assert [op for op, _ in cost.writes] == ["PutItem", "PutItem", "UpdateItem", "UpdateItem", "UpdateItem"]
    assert cost.units == 6
    assert not {Attr.ACTIVE, Attr.CHECKED_AT} & raw_item(control_plane, launch_id).keys()


def relaunched_in_the_stale_index(cp: ControlPlane) -> LaunchRequest:
    """Launch a task whose attempt 1 failed to start, so attempt 2 is scheduled: the item is in the stale index."""
    request = launch_request(max_attempts=2)
    table = TaskTable(cp.table)
    table.create_for_launch(request, lease_seconds=60)
    table.record_launched(request.launch_id, 1, task_arn=ARN, cluster_arn=None)
    snap = EcsSnapshot(TaskState.FAILED, ARN, 3, "STOPPED", reason="CannotPullContainerError")
    assert table.schedule_relaunch(request.launch_id, 1, snap)[0]
    return request


def test_touch_is_not_a_change(control_plane: ControlPlane) -> None:
    """The reconciler's touch (a relaunch it published, an item of the previous version) re-stamps the check time
    only: the change feed does not show it again."""
    request = relaunched_in_the_stale_index(control_plane)
    relaunched = raw_item(control_plane, request.launch_id)
    later = TaskTable(control_plane.table, clock=lambda: time.time() + 900)
    later.touch(request.launch_id, 2)
    touched = raw_item(control_plane, request.launch_id)
    assert int(touched[Attr.CHECKED_AT]["N"]) > int(relaunched[Attr.CHECKED_AT]["N"])
    assert (touched[Attr.REV], touched.get(Attr.CHANGED_AT)) == (
        relaunched[Attr.REV],
        relaunched.get(Attr.CHANGED_AT),
    )
    # Only items of the stale index are found, by check time, with everything the reconciler needs.
    (stale,) = TaskTable(control_plane.table, clock=lambda: time.time() + 3600).stale_active(
        int((time.time() + 1800) * 1000)
    )
    assert (stale.launch_id, stale.state, stale.attempt) == (request.launch_id, TaskState.LAUNCHING, 2)


def test_only_outcomes_enter_the_change_feed(control_plane: ControlPlane) -> None:
    """Created, launched, pending and running are not stamped: the change index is written once, at the end."""
    request = launch_request()
    table = TaskTable(control_plane.table)
    table.create_for_launch(request, lease_seconds=60)
    table.record_launched(request.launch_id, 1, task_arn=ARN, cluster_arn=None)
    table.apply_ecs_event(request.launch_id, 1, EcsSnapshot(TaskState.PENDING, ARN, 2, "PENDING"))
    table.apply_ecs_event(request.launch_id, 1, EcsSnapshot(TaskState.RUNNING, ARN, 3, "RUNNING"))
    assert Attr.CHANGED_AT not in raw_item(control_plane, request.launch_id)
    assert table.items_by_state(request.owner) == []
    snap = EcsSnapshot(TaskState.SUCCEEDED, ARN, 6, "DEPROVISIONING", exit_code=0)
    table.apply_ecs_event(request.launch_id, 1, snap)
    (finished,) = table.items_by_state(request.owner)
    assert (finished.launch_id, finished.state, finished.rev) == (request.launch_id, TaskState.SUCCEEDED, 5)
    assert table.active_items() == []


def test_relaunch_without_a_stored_request_fails_with_the_reason(control_plane: ControlPlane) -> None:
    request = launch_request()
    table = TaskTable(control_plane.table)
    table.create_for_launch(request, lease_seconds=60)
    table.record_launched(request.launch_id, 1, task_arn=ARN, cluster_arn=None)
    snap = EcsSnapshot(TaskState.FAILED, ARN, 5, "STOPPED", reason="ECS could not start the task")
    relaunched, _ = table.schedule_relaunch(request.launch_id, 1, snap)
    assert relaunched
    control_plane.client("dynamodb").delete_item(
        TableName=control_plane.table, Key={Attr.PK: {"S": request_key(request.launch_id)}}
    )
    launcher = Launcher(LauncherSettings.from_env(control_plane.env), table=table)
    message = RelaunchRequest(launch_id=request.launch_id, attempt=2)
    assert launcher.handle(message.to_json()) is Result.LAUNCH_FAILED
    item = table.get(request.launch_id)
    assert item is not None and item.state is TaskState.FAILED
    assert "launch request is no longer stored" in (item.reason or "")


# ------------------------------------------------------------------------------------- the status handler


@pytest.fixture
def dynamodb_calls(control_plane: ControlPlane) -> CallCounter:
    tracker = status_handler.tracker()
    return CallCounter().attach(tracker.table.client)


def test_steps_that_cannot_change_the_state_are_skipped_without_a_write(
    control_plane: ControlPlane, dynamodb_calls: CallCounter
) -> None:
    launch_id, task = launch(control_plane)
    for version, last in enumerate(["PROVISIONING", "PENDING", "ACTIVATING"], start=1):
        assert send(task_event(task, last_status=last, version=version)) == "Skipped"
    assert send(task_event(task, last_status="RUNNING", version=4)) == "Applied"
    # On its way down without an exit code yet: still RUNNING, nothing to write.
    for version, last in enumerate(["DEACTIVATING", "STOPPING", "DEPROVISIONING"], start=5):
        assert send(task_event(task, last_status=last, version=version)) == "Skipped"
    # The RUNNING event's write, and the note that events arrive (at most one a minute per process, health.py).
    assert dynamodb_calls.calls == {"UpdateItem": 2}
    item = TaskTable(control_plane.table).get(launch_id)
    assert item is not None and (item.state, item.ecs_version) == (TaskState.RUNNING, 4)


def test_spot_warning_while_running_is_written_with_its_reason(
    control_plane: ControlPlane, dynamodb_calls: CallCounter
) -> None:
    launch_id, task = launch(control_plane)
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    warning = task_event(
        task, last_status="RUNNING", version=4, desired_status="STOPPED", stop_code="SpotInterruption"
    )
    assert send(warning) == "Applied"
    item = TaskTable(control_plane.table).get(launch_id)
    assert item is not None and item.state is TaskState.RUNNING and "SpotInterruption" in (item.reason or "")


def test_stopped_after_an_exit_code_at_stopping_reads_and_does_not_write(
    control_plane: ControlPlane, dynamodb_calls: CallCounter
) -> None:
    launch_id, task = launch(control_plane)
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    assert send(task_event(task, last_status="STOPPING", version=6, exit_code=0)) == "Finished"
    dynamodb_calls.calls.clear()
    assert send(task_event(task, last_status="STOPPED", version=7, exit_code=0)) == "Stale"
    assert dynamodb_calls.calls == {"GetItem": 1}
    item = TaskTable(control_plane.table).get(launch_id)
    assert item is not None and (item.state, item.ecs_version) == (TaskState.SUCCEEDED, 6)


# ---------------------------------------------------------------------------------------- notifications


class _Events:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.extend(e["DetailType"] for e in Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"} for _ in Entries]}


@pytest.mark.parametrize("publish_all", [False, True])
def test_routine_notifications_only_with_publish_all_events(
    control_plane: ControlPlane, publish_all: bool
) -> None:
    events = _Events()
    bus = ControlPlaneBus("control-plane", client=events, publish_all=publish_all)
    env = dict(control_plane.env, PUBLISH_ALL_EVENTS=str(publish_all).lower())
    settings = LauncherSettings.from_env(env)
    assert settings.publish_all_events is publish_all
    launcher = Launcher(settings, bus=bus)
    tracker = StatusTracker(StatusSettings.from_env(env), bus=bus)
    ok, failing = launch_request("ok"), launch_request("failing", executor_config={"cpu": "1024"})
    assert launcher.handle(ok.to_json()) is Result.LAUNCHED
    assert launcher.handle(failing.to_json()) is Result.LAUNCH_FAILED
    item = TaskTable(control_plane.table).get(ok.launch_id)
    assert item is not None and item.task_arn
    task = control_plane.client("ecs").describe_tasks(
        cluster=control_plane.ecs.cluster_arn, tasks=[item.task_arn]
    )
    (ecs_task,) = task["tasks"]
    assert (
        tracker.handle(task_event(ecs_task, last_status="STOPPED", version=9, exit_code=0)).value
        == "Finished"
    )
    routine = [TASK_LAUNCHED, TASK_FINISHED] if publish_all else []
    assert sorted(events.sent) == sorted([LAUNCH_FAILED, *routine])


def test_a_failed_task_is_always_announced(control_plane: ControlPlane) -> None:
    events = _Events()
    bus = ControlPlaneBus("control-plane", client=events)
    tracker = StatusTracker(StatusSettings.from_env(control_plane.env), bus=bus)
    _, task = launch(control_plane)
    assert tracker.handle(task_event(task, last_status="STOPPED", version=9, exit_code=1)).value == "Finished"
    assert events.sent == [TASK_FINISHED]


def test_publish_all_events_must_be_a_boolean(control_plane: ControlPlane) -> None:
    with pytest.raises(ValueError, match="PUBLISH_ALL_EVENTS"):
        StatusSettings.from_env(dict(control_plane.env, PUBLISH_ALL_EVENTS="sometimes"))


def test_history_is_bounded_and_the_item_stays_under_one_kilobyte_at_most_attempts(
    control_plane: ControlPlane,
) -> None:
    """Every attempt relaunched, each with many PENDING and RUNNING events (Spot warnings with their reasons) and a
    long stop reason: history keeps one entry per (attempt, state) of the last two attempts and the outcome, and
    every write stays one write unit."""
    max_attempts = LaunchRequest.model_fields["max_attempts"].metadata[1].le
    request = launch_request(
        "a_typical_task_id", owner="default:scheduler-7f9c2b1a", max_attempts=max_attempts
    )
    table = TaskTable(control_plane.table)
    table.create_for_launch(request, lease_seconds=60)
    # As long as ECS's own stop reasons get (the item keeps the whole reason; see the cut test above).
    stop_reason = (
        "CannotPullContainerError: pull access denied for airflow, repository does not exist " * 2
    )[:120]
    spot_reason = "Your Spot Task was interrupted. (SpotInterruption)"
    sizes: list[int] = []
    lengths: list[int] = []

    def measure(item: TaskItem | None) -> None:
        assert item is not None
        sizes.append(item_size(raw_item(control_plane, request.launch_id)))
        lengths.append(len(item.history))

    for attempt in range(1, max_attempts + 1):
        arn = f"{ARN[:-2]}{attempt:02d}"
        if attempt > 1:
            measure(table.claim_attempt(request.launch_id, attempt, lease_seconds=60).item)
        measure(table.record_launched(request.launch_id, attempt, task_arn=arn, cluster_arn=CLUSTER_ARN)[1])
        events: list[tuple[TaskState, str, str | None]] = [(TaskState.PENDING, "PENDING", None)] * 3
        events += [(TaskState.RUNNING, "RUNNING", None)]
        events += [(TaskState.RUNNING, "RUNNING", spot_reason)] * 4
        for version, (state, last_status, reason) in enumerate(events, start=2):
            snap = EcsSnapshot(state, arn, version, last_status, cluster_arn=CLUSTER_ARN, reason=reason)
            outcome, item = table.apply_ecs_event(request.launch_id, attempt, snap)
            assert outcome is EventOutcome.APPLIED
            measure(item)
        stopped = EcsSnapshot(
            TaskState.FAILED,
            arn,
            len(events) + 2,
            "STOPPED",
            cluster_arn=CLUSTER_ARN,
            reason=stop_reason,
            stop_code="TaskFailedToStart",
        )
        if attempt < max_attempts:
            relaunched, item = table.schedule_relaunch(request.launch_id, attempt, stopped)
            assert relaunched
        else:
            _, item = table.apply_ecs_event(request.launch_id, attempt, stopped)
        measure(item)
    item = table.get(request.launch_id)
    assert item is not None and (item.state, item.attempt) == (TaskState.FAILED, max_attempts)
    print(
        f"\nlargest item over {len(sizes)} writes: {max(sizes)} bytes, history up to {max(lengths)} entries"
    )
    assert max(lengths) <= HISTORY_LIMIT
    assert max(sizes) < 1024
    # The last two attempts and the outcome, in order, each attempt's task id kept.
    last, before = max_attempts, max_attempts - 1
    assert [(e["attempt"], e["state"]) for e in item.history] == [
        *[(a, s) for a in (before, last) for s in ("LAUNCHING", "PENDING", "RUNNING")],
        (last, "FAILED"),
    ]
    assert [e["task"] for e in item.history if "task" in e] == [
        f"{ARN[-32:-2]}{a:02d}" for a in (before, last)
    ]


def test_a_touch_costs_three_write_units_which_running_tasks_no_longer_pay(
    control_plane: ControlPlane,
) -> None:
    """The previous design touched every active item unchanged for 10 minutes: the write re-stamps the stale
    index's sort key, so the item (1) plus the index entry's delete and put (2). At 50,000 tasks running for
    hours that is 50,000 x 6 an hour x 720 hours x 3 = 648M WRU a month (~$405): counted here per touch."""
    # Only an item in the stale index is touched (a relaunch; items the previous version indexed).
    request = relaunched_in_the_stale_index(control_plane)
    later = TaskTable(control_plane.table, clock=lambda: time.time() + 900)
    with WriteUnits().counting() as cost:
        later.touch(request.launch_id, 2)
    monthly = 50_000 * 6 * 720 * cost.units
    print(
        f"\na touch: {cost.units} WRU; at 50,000 running, every 10 minutes: {monthly / 1e6:.0f}M WRU a month"
    )
    assert cost.units == 3
