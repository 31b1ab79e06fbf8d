"""Operator commands: list tasks by state, show one task's history, replay the launch and status DLQs after a fix."""

from __future__ import annotations

import json

import pytest
from ecs_event_executor.cli import main
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from harness.aws_shapes import lambda_failure_record
from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import LambdaContextStub, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import launch
from tests.support.requests import launch_request


def test_tasks_and_show(control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    ok = launch_request("ok", owner="team-a:1")
    late = launch_request("late", owner="team-a:1", executor_config={"cpu": "1024"})
    launcher_handler.handler(
        body_event([ok.to_json(), late.to_json()], control_plane.queue_arn), LambdaContextStub()
    )

    assert main(["--table", control_plane.table, "tasks", "--state", "failed"]) == 0
    listing = capsys.readouterr().out
    assert late.launch_id in listing and ok.launch_id not in listing
    assert "total 1 FAILED=1" in listing

    assert main(["--table", control_plane.table, "tasks", "--owner", "team-a:1"]) == 0
    assert "total 2 PENDING=1 FAILED=1" in capsys.readouterr().out

    # Unfiltered, the scan sees the launch requests' side items too: they are not tasks.
    assert main(["--table", control_plane.table, "tasks"]) == 0
    assert "total 2 PENDING=1 FAILED=1" in capsys.readouterr().out

    assert main(["--table", control_plane.table, "show", late.launch_id]) == 0
    shown = capsys.readouterr().out
    assert "executor_config.cpu" in shown and "FAILED" in shown and "example" in shown
    assert main(["--table", control_plane.table, "show", "missing-launch-id"]) == 1


def test_replay_dlq_moves_fixed_messages_and_keeps_poison(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = control_plane.client("sqs")
    good = launch_request("replayed")
    sqs.send_message(QueueUrl=control_plane.dlq_url, MessageBody=good.to_json())
    sqs.send_message(
        QueueUrl=control_plane.dlq_url,
        MessageBody=json.dumps({"schema": 1, "kind": "nonsense"}),
        MessageAttributes={"FailureReason": {"DataType": "String", "StringValue": "kind: bad"}},
    )
    args = ["replay-dlq", "--dlq-url", control_plane.dlq_url, "--to-queue", control_plane.queue_url]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "replayed 1, left 1" in out and "still malformed" in out
    replayed = sqs.receive_message(QueueUrl=control_plane.queue_url)["Messages"]
    assert [m["Body"] for m in replayed] == [good.to_json()]


def test_replay_of_the_ecs_events_dlq_goes_to_the_failed_events_queue_the_reconciler_replays(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event EventBridge could not deliver waits in the rule's target DLQ; after the fix it is moved to the
    failed-events queue, which lists Lambda's records with their reason, and the reconciler's replay lands it."""
    sqs = control_plane.client("sqs")
    status_dlq = sqs.create_queue(QueueName="airflow-status-dlq")["QueueUrl"]
    failed_events = sqs.create_queue(QueueName="airflow-status-failed-events")["QueueUrl"]
    launch_id, task = launch(control_plane)
    _, other_task = launch(control_plane, task_id="other")
    event = json.dumps(task_event(task, last_status="STOPPING", version=4, exit_code=0))
    sqs.send_message(QueueUrl=status_dlq, MessageBody=event)
    other = task_event(other_task, last_status="STOPPING", version=4, exit_code=0)
    record = lambda_failure_record(
        "airflow-ecs-status", other, TimeoutError("Task timed out after 30.00 seconds")
    )
    sqs.send_message(QueueUrl=failed_events, MessageBody=json.dumps(record))
    args = ["replay-dlq", "--dlq-url", status_dlq, "--to-queue", failed_events]
    assert main([*args, "--dry-run"]) == 0
    assert "would replay" in capsys.readouterr().out
    assert main(args) == 0
    assert "replayed 1, left 0" in capsys.readouterr().out
    # The failed-events queue lists both, Lambda's with its reason.
    assert main(["replay-dlq", "--dlq-url", failed_events, "--to-queue", failed_events, "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "RetriesExhausted - TimeoutError: Task timed out" in listing and "left 2" in listing
    env = dict(control_plane.env, FAILED_EVENTS_QUEUE_URL=failed_events)
    assert Reconciler(ReconcilerSettings.from_env(env)).run().replayed == 2
    table = TaskTable(control_plane.table)
    assert table.get(launch_id).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
