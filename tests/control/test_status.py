"""The status Lambda: ECS events become item states, in version order, for our tasks only."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from ecs_event_executor.control import bus
from ecs_event_executor.control.messages import parse_message
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import REGION, LambdaContextStub, apply_input_path_detail, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import deliver, invoke_status, launch, send
from tests.support.requests import launch_request


def state(cp: ControlPlane, launch_id: str) -> TaskItem:
    found = TaskTable(cp.table).get(launch_id)
    assert found is not None
    return found


def test_lifecycle_to_success(control_plane: ControlPlane) -> None:
    launch_id, task = launch(control_plane)
    # PROVISIONING and PENDING cannot change the item (the launcher recorded PENDING): skipped, no write.
    for version, last in enumerate(["PROVISIONING", "PENDING"], start=1):
        assert send(task_event(task, last_status=last, version=version)) == "Skipped"
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    assert state(control_plane, launch_id).state is TaskState.RUNNING
    assert (
        send(
            task_event(
                task, last_status="STOPPED", version=5, exit_code=0, stop_code="EssentialContainerExited"
            )
        )
        == "Finished"
    )
    final = state(control_plane, launch_id)
    assert (final.state, final.exit_code, final.ecs_version) == (TaskState.SUCCEEDED, 0, 5)
    assert final.finished_at and final.running_at


def test_late_and_duplicate_events_never_move_backwards(control_plane: ControlPlane) -> None:
    launch_id, task = launch(control_plane)
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    assert send(task_event(task, last_status="PENDING", version=2)) == "Skipped"
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Stale"
    assert state(control_plane, launch_id).state is TaskState.RUNNING
    assert send(task_event(task, last_status="STOPPED", version=6, exit_code=1)) == "Finished"
    # A terminal state is final, even for a (bogus) newer event.
    assert send(task_event(task, last_status="RUNNING", version=9)) == "Stale"
    assert state(control_plane, launch_id).state is TaskState.FAILED


def test_a_late_running_event_never_replaces_a_newer_one(control_plane: ControlPlane) -> None:
    """Only ECS version order guards this: both events are RUNNING (a state may follow itself), none is final."""
    launch_id, task = launch(control_plane)
    warning = task_event(
        task,
        last_status="RUNNING",
        desired_status="STOPPED",
        version=4,
        stop_code="SpotInterruption",
        stopped_reason="Your Spot Task was interrupted.",
    )
    assert send(warning) == "Applied"
    # The plain RUNNING event the warning followed arrives late (EventBridge does not keep order).
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Stale"
    item = state(control_plane, launch_id)
    assert (item.state, item.ecs_version) == (TaskState.RUNNING, 4)
    assert (item.reason or "").startswith("stopping:"), item.reason


def test_event_before_the_launcher_recorded_the_task(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status handler finds the item from the event's environment, even before the ARN is recorded."""
    request = launch_request()
    launcher = launcher_handler.launcher()
    events: list[dict[str, Any]] = []
    original = launcher.table.record_launched

    def record_after_event(
        launch_id: str, attempt: int, *, task_arn: str, **kwargs: Any
    ) -> tuple[bool, TaskItem | None]:
        task = control_plane.client("ecs").describe_tasks(
            cluster=control_plane.ecs.cluster, tasks=[task_arn]
        )["tasks"][0]
        events.append(task)
        assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
        return original(launch_id, attempt, task_arn=task_arn, **kwargs)

    monkeypatch.setattr(launcher.table, "record_launched", record_after_event)
    launcher_handler.handler(body_event([request.to_json()], control_plane.queue_arn), LambdaContextStub())
    stored = state(control_plane, request.launch_id)
    assert stored.state is TaskState.RUNNING
    assert stored.task_arn == events[0]["taskArn"]
    assert stored.launched_at is not None


def test_events_of_other_tasks_are_ignored(control_plane: ControlPlane) -> None:
    _, task = launch(control_plane)
    foreign = dict(task, startedBy="ecs-svc/123")
    assert send(task_event(foreign, last_status="RUNNING", version=2)) == "NotOurs"
    other_cluster = dict(task, clusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/other")
    assert send(task_event(other_cluster, last_status="RUNNING", version=2)) == "NotOurs"


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"source": "aws.ecs"},
        {"source": "aws.ecs", "detail-type": "x", "detail": {"taskArn": 5}},
        "not a dict",
    ],
)
def test_malformed_event_is_counted_not_raised(control_plane: ControlPlane, event: Any) -> None:
    assert send(event) == "Malformed"


def test_failed_to_start_is_relaunched_through_the_bus(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status handler cannot call ECS: it publishes a relaunch that a bus rule routes to the launch queue."""
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name="control-plane")
    sqs = control_plane.client("sqs")
    events.put_rule(
        Name="relaunch",
        EventBusName="control-plane",
        EventPattern=json.dumps({"source": [bus.SOURCE], "detail-type": [bus.RELAUNCH_REQUESTED]}),
    )
    queue_arn = control_plane.queue_arn
    events.put_targets(
        Rule="relaunch",
        EventBusName="control-plane",
        Targets=[{"Id": "launch-queue", "Arn": queue_arn, "InputPath": "$.detail"}],
    )
    monkeypatch.setenv("EVENT_BUS_NAME", "control-plane")
    status_handler.reset()
    launcher_handler.reset()

    launch_id, first = launch(control_plane, max_attempts=2)
    stopped = task_event(
        first,
        last_status="STOPPED",
        version=3,
        stop_code="TaskFailedToStart",
        stopped_reason="CannotPullContainerError",
        started=False,
    )
    assert send(stopped) == "Relaunched"
    # A duplicate (or a retried delivery after a crash) publishes the relaunch again; the launcher's claim
    # makes the second copy a no-op.
    assert send(stopped) == "Relaunched"
    received = sqs.receive_message(QueueUrl=control_plane.queue_url, MaxNumberOfMessages=10)["Messages"]
    relaunch = [apply_input_path_detail(m["Body"]) for m in received]
    assert [parse_message(body).kind for body in relaunch] == ["relaunch", "relaunch"]
    launcher_handler.handler(body_event(relaunch, control_plane.queue_arn), LambdaContextStub())
    assert len(control_plane.client("ecs").list_tasks(cluster=control_plane.ecs.cluster)["taskArns"]) == 2
    second_item = state(control_plane, launch_id)
    assert second_item.attempt == 2 and second_item.state is TaskState.PENDING
    assert second_item.task_arn != first["taskArn"]
    second = control_plane.client("ecs").describe_tasks(
        cluster=control_plane.ecs.cluster, tasks=[second_item.task_arn]
    )["tasks"][0]
    # Events of the replaced task are stale now.
    assert (
        send(
            task_event(first, last_status="STOPPED", version=4, stop_code="TaskFailedToStart", started=False)
        )
        == "Stale"
    )
    # The last attempt fails for good, and says how many attempts it took.
    assert (
        send(
            task_event(
                second,
                last_status="STOPPED",
                version=3,
                stop_code="TaskFailedToStart",
                stopped_reason="CannotPullContainerError",
                started=False,
            )
        )
        == "Finished"
    )
    final = state(control_plane, launch_id)
    assert final.state is TaskState.FAILED
    assert "gave up after 2 of 2 attempts" in (final.reason or "")


def test_stop_of_a_cancelled_task_ends_cancelled(control_plane: ControlPlane) -> None:
    from ecs_event_executor.control.messages import CancelRequest

    launch_id, task = launch(control_plane)
    owner = state(control_plane, launch_id).owner
    launcher_handler.handler(
        body_event(
            [CancelRequest(launch_id=launch_id, owner=owner or "", reason="revoked").to_json()],
            control_plane.queue_arn,
        ),
        LambdaContextStub(),
    )
    assert (
        send(
            task_event(
                task, last_status="STOPPED", version=4, stop_code="UserInitiated", stopped_reason="revoked"
            )
        )
        == "Finished"
    )
    assert state(control_plane, launch_id).state is TaskState.CANCELLED


def test_stop_of_a_cancelled_task_with_an_exit_code_ends_cancelled(control_plane: ControlPlane) -> None:
    """A container killed by our StopTask may still report an exit code (137): the launch was cancelled."""
    from ecs_event_executor.control.messages import CancelRequest

    launch_id, task = launch(control_plane)
    cancel = CancelRequest(
        launch_id=launch_id, owner=state(control_plane, launch_id).owner or "", reason="terminated"
    )
    launcher_handler.handler(body_event([cancel.to_json()], control_plane.queue_arn), LambdaContextStub())
    stopped = task_event(
        task,
        last_status="STOPPED",
        version=5,
        exit_code=137,
        stop_code="UserInitiated",
        stopped_reason="terminated",
    )
    assert send(stopped) == "Finished"
    final = state(control_plane, launch_id)
    assert final.state is TaskState.CANCELLED
    assert final.reason is not None and final.reason.startswith("terminated")


def test_exit_code_at_stopping_finishes_the_task_and_stopped_is_stale(control_plane: ControlPlane) -> None:
    launch_id, task = launch(control_plane)
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    stopping = task_event(
        task, last_status="STOPPING", version=4, exit_code=0, stop_code="EssentialContainerExited"
    )
    assert send(stopping) == "Finished"
    assert state(control_plane, launch_id).state is TaskState.SUCCEEDED
    stopped = task_event(
        task, last_status="STOPPED", version=6, exit_code=0, stop_code="EssentialContainerExited"
    )
    assert send(stopped) == "Stale"


def test_stopping_without_an_exit_code_waits_for_stopped(control_plane: ControlPlane) -> None:
    launch_id, task = launch(control_plane)
    assert send(task_event(task, last_status="RUNNING", version=3)) == "Applied"
    stopping = task_event(task, last_status="STOPPING", version=4, stop_code="UserInitiated")
    assert send(stopping) == "Skipped"
    assert state(control_plane, launch_id).state is TaskState.RUNNING
    stopped = task_event(
        task, last_status="STOPPED", version=6, stop_code="UserInitiated", stopped_reason="by operator"
    )
    assert send(stopped) == "Finished"
    assert "stopped by a user" in (state(control_plane, launch_id).reason or "")


def throttle_updates_of(launch_ids: set[str]) -> Any:
    """Return a botocore before-call hook: UpdateItem of these launches answers as a throttled table does."""

    def hook(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body", b"")  # the serialized request
        text = body.decode() if isinstance(body, bytes) else str(body)
        if not any(launch_id in text for launch_id in launch_ids):
            return None
        error = {
            "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), error

    return hook


def test_a_failed_event_raises_so_lambda_retries_it_and_other_events_land(
    control_plane: ControlPlane,
) -> None:
    """One event per invocation: the event whose write failed raises (Lambda retries it, then the on-failure
    destination keeps it for the reconciler); the other events' invocations are not touched by it."""
    launched = [launch(control_plane, task_id=f"t{i}") for i in range(3)]
    table = status_handler.tracker().table
    table.client.meta.events.register(
        "before-call.dynamodb.UpdateItem", throttle_updates_of({launched[1][0]})
    )
    events = [
        task_event(task, last_status="STOPPED", version=5, exit_code=0, stop_code="EssentialContainerExited")
        for _, task in launched
    ]
    assert deliver(events) == [1]
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        invoke_status(events[1])
    states = [state(control_plane, launch_id).state for launch_id, _ in launched]
    assert states == [TaskState.SUCCEEDED, TaskState.PENDING, TaskState.SUCCEEDED]


def test_a_malformed_event_is_acknowledged_not_retried(control_plane: ControlPlane) -> None:
    """Retrying cannot fix a malformed event: the invocation succeeds (counted as Malformed), never retried."""
    _, task = launch(control_plane)
    assert invoke_status({"detail-type": "x"}) == {"result": "Malformed"}
    assert invoke_status("not an event") == {"result": "Malformed"}
    assert send(task_event(task, last_status="STOPPING", version=4, exit_code=0)) == "Finished"


def test_an_event_invoked_directly_is_applied(control_plane: ControlPlane) -> None:
    """The rule invokes the function with the event itself (EventBridge's asynchronous invoke)."""
    launch_id, task = launch(control_plane)
    event = task_event(
        task, last_status="RUNNING", desired_status="STOPPED", version=3, stop_code="SpotInterruption"
    )
    assert invoke_status(event) == {"result": "Applied"}
    assert state(control_plane, launch_id).state is TaskState.RUNNING
