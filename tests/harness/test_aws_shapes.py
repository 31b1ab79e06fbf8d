"""The shapes the local mode, the bench and the tests hand the handlers are the ones AWS documents."""

from __future__ import annotations

import json
from pathlib import Path

from aws_lambda_powertools.utilities.parser.models import SqsModel
from ecs_event_executor.control.ecs_state import TaskStateChange, map_event

from harness.aws_shapes import (
    LambdaContext,
    apply_input_path,
    ecs_container,
    ecs_task_detail,
    received_sqs_event,
    task_state_change,
)

DOCUMENTED = Path(__file__).resolve().parents[1] / "fixtures" / "ecs_events" / "fargate_task_running.json"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/airflow/0123456789abcdef0123456789abcdef"
TASK = {"taskArn": TASK_ARN, "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/airflow"}


def _stopped_event() -> dict[str, object]:
    container = ecs_container(TASK_ARN, "base", last_status="STOPPED", exit_code=3)
    detail = ecs_task_detail(
        TASK,
        last_status="STOPPED",
        version=5,
        containers=[container],
        started_at=1_700_000_000.0,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
    )
    return task_state_change(detail)


def test_task_state_change_has_the_documented_envelope_and_maps() -> None:
    documented = json.loads(DOCUMENTED.read_text())
    event = _stopped_event()
    assert event.keys() == documented.keys()
    assert (event["source"], event["detail-type"]) == (documented["source"], documented["detail-type"])
    parsed = TaskStateChange.model_validate(event)
    assert parsed.detail.version == 5
    assert parsed.detail.desired_status == "STOPPED"
    assert "exited with code 3" in (map_event(parsed.detail, "base").reason or "")


def test_input_path_delivers_the_detail() -> None:
    event = _stopped_event()
    assert json.loads(apply_input_path(json.dumps(event), "$.detail")) == event["detail"]


def test_received_messages_make_a_valid_lambda_sqs_event() -> None:
    messages = [
        {
            "MessageId": "m1",
            "ReceiptHandle": "r1",
            "Body": "{}",
            "Attributes": {"ApproximateReceiveCount": "2"},
        }
    ]
    event = received_sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:q", extra_receives=1)
    record = SqsModel.model_validate(event).Records[0]
    assert (record.messageId, record.receiptHandle, record.body) == ("m1", "r1", "{}")
    assert record.attributes.ApproximateReceiveCount == "3"


def test_lambda_context_counts_down_from_its_timeout() -> None:
    context = LambdaContext("launcher", memory_limit_in_mb=512, timeout_seconds=60.0)
    assert 0 < context.get_remaining_time_in_millis() <= 60_000
    assert context.invoked_function_arn.endswith(":function:launcher")
    assert LambdaContext("done", timeout_seconds=0.0).get_remaining_time_in_millis() == 0
