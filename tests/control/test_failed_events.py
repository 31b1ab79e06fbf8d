"""The failed-events queue (the status function's on-failure destination), replayed by each reconciler pass."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from ecs_event_executor.control.failed_events import FailedEvents, event_of, failure_of
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.status_tracking import StatusSettings, StatusTracker
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from harness.aws_shapes import lambda_failure_record
from tests.conftest import ControlPlane
from tests.support.ecs_events import task_event
from tests.support.handlers import launch


def failed_events_queue(cp: ControlPlane) -> str:
    return str(cp.client("sqs").create_queue(QueueName="airflow-status-failed-events")["QueueUrl"])


def put(cp: ControlPlane, queue_url: str, *bodies: str) -> None:
    for body in bodies:
        cp.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)


def record(event: Any) -> str:
    """Return what Lambda sends the on-failure destination after the function failed on ``event`` 3 times."""
    return json.dumps(lambda_failure_record("airflow-ecs-status", event, TimeoutError("Task timed out")))


def depth(cp: ControlPlane, queue_url: str) -> int:
    attributes = cp.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def tracker(cp: ControlPlane) -> StatusTracker:
    return StatusTracker(StatusSettings.from_env(cp.env), table=TaskTable(cp.table))


def stopped(task: dict[str, Any]) -> dict[str, Any]:
    return task_event(task, last_status="STOPPING", version=4, exit_code=0)


def test_an_applied_event_is_deleted_and_its_task_finishes(control_plane: ControlPlane) -> None:
    launch_id, task = launch(control_plane)
    queue = failed_events_queue(control_plane)
    put(control_plane, queue, record(stopped(task)))
    report = FailedEvents(queue, tracker(control_plane), control_plane.client("sqs")).replay()
    assert (report.replayed, report.kept, report.malformed) == (1, 0, 0)
    assert TaskTable(control_plane.table).get(launch_id).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    assert depth(control_plane, queue) == 0


def test_a_replay_that_fails_stays_for_the_next_pass_and_does_not_block_the_rest(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, task1), (second, task2) = launch(control_plane, task_id="a"), launch(control_plane, task_id="b")
    queue = failed_events_queue(control_plane)
    put(control_plane, queue, record(stopped(task1)), record(stopped(task2)))
    replayer = FailedEvents(queue, tracker(control_plane), control_plane.client("sqs"), hide_seconds=1)
    handle = replayer.tracker.handle

    def throttled_for_first(event: Any) -> Any:
        if event["detail"]["taskArn"] == task1["taskArn"]:
            raise RuntimeError("ProvisionedThroughputExceededException")
        return handle(event)

    monkeypatch.setattr(replayer.tracker, "handle", throttled_for_first)
    report = replayer.replay()
    assert (report.replayed, report.kept) == (1, 1)
    table = TaskTable(control_plane.table)
    assert table.get(second).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    assert table.get(first).state is TaskState.PENDING  # type: ignore[union-attr]
    assert depth(control_plane, queue) == 1  # kept, hidden for HIDE_SECONDS
    # A later pass, once the message is visible again, applies it.
    monkeypatch.setattr(replayer.tracker, "handle", handle)
    deadline = time.monotonic() + 10
    while table.get(first).state is not TaskState.SUCCEEDED:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the kept event was never replayed"
        replayer.replay()
    assert depth(control_plane, queue) == 0


def test_a_malformed_message_is_kept_with_its_reason_and_the_rest_is_applied(
    control_plane: ControlPlane,
) -> None:
    """Decision: the queue is a dead-letter store (alarmed): what holds no ECS event stays for the operator
    (``replay-dlq --dry-run`` lists it with the reason) and never blocks the events behind it."""
    launch_id, task = launch(control_plane)
    queue = failed_events_queue(control_plane)
    put(
        control_plane,
        queue,
        "not json",
        json.dumps({"requestPayload": "a string"}),
        record({"detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": {"taskArn": 1}}),
        record(stopped(task)),
    )
    report = FailedEvents(queue, tracker(control_plane), control_plane.client("sqs")).replay()
    assert (report.replayed, report.malformed) == (1, 3)
    assert any("not JSON" in reason for reason in report.reasons)
    assert TaskTable(control_plane.table).get(launch_id).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    assert depth(control_plane, queue) == 3


def test_lambdas_record_and_a_bare_event_both_carry_the_event() -> None:
    event = {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {"taskArn": "t"}}
    assert event_of(record(event)) == event
    assert event_of(json.dumps(event)) == event  # moved here from the rule's target DLQ by replay-dlq
    assert failure_of(record(event)) == "RetriesExhausted - TimeoutError: Task timed out"


def test_the_replay_stops_at_its_deadline(control_plane: ControlPlane) -> None:
    _, task = launch(control_plane)
    queue = failed_events_queue(control_plane)
    put(control_plane, queue, record(stopped(task)))
    report = FailedEvents(queue, tracker(control_plane), control_plane.client("sqs")).replay(lambda: True)
    assert report.replayed == 0 and depth(control_plane, queue) == 1


def test_each_reconciler_pass_replays_the_failed_events(control_plane: ControlPlane) -> None:
    launch_id, task = launch(control_plane)
    queue = failed_events_queue(control_plane)
    put(control_plane, queue, record(stopped(task)))
    env = dict(control_plane.env, FAILED_EVENTS_QUEUE_URL=queue)
    report = Reconciler(ReconcilerSettings.from_env(env)).run()
    assert (report.replayed, report.replay_kept) == (1, 0)
    assert TaskTable(control_plane.table).get(launch_id).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    assert depth(control_plane, queue) == 0
