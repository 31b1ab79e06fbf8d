"""Build what AWS hands the Lambda handlers, in its documented shapes, for the local mode, the bench and the tests.

- ECS "Task State Change" events (examples from the AWS documentation: ``tests/fixtures/ecs_events``): a task's
  ``detail`` built from a RunTask/DescribeTasks task description, and the EventBridge envelope around a detail.
- Lambda's SQS event: ``Records`` with body, attributes, message id and receipt handle, from ReceiveMessage output.
- EventBridge's ``InputPath`` on a target, which moto does not apply.
- Lambda's record of an asynchronous invocation that failed after its retries (what an on-failure destination
  receives).
- A Lambda context with the attributes Powertools reads.

The three emulators (local mode, bench, tests) differ in where a task comes from and how time passes, not in these
shapes, so they all build them here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
ECS_SOURCE = "aws.ecs"
TASK_STATE_CHANGE = "ECS Task State Change"
# ECS's own lastStatus values once the task is on its way down: desiredStatus is STOPPED by then.
STOPPING_STATUSES = frozenset({"DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"})

Moment = float | datetime


def iso(moment: Moment | None = None) -> str:
    """Return ``moment`` (epoch seconds or a datetime; default now) as ECS writes timestamps: UTC, milliseconds, Z."""
    if moment is None:
        moment = time.time()
    when = moment if isinstance(moment, datetime) else datetime.fromtimestamp(moment, UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------- ECS events


def ecs_container(
    task_arn: str,
    name: str,
    *,
    last_status: str,
    exit_code: int | None = None,
    container_arn: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Return one entry of an ECS event's ``detail.containers`` (``reason``: the container's own, e.g.
    ``OutOfMemoryError: Container killed due to memory usage``)."""
    container: dict[str, Any] = {"name": name, "lastStatus": last_status, "taskArn": task_arn}
    if container_arn is not None:
        container["containerArn"] = container_arn
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason is not None:
        container["reason"] = reason
    return container


def ecs_task_detail(
    task: Mapping[str, Any],
    *,
    last_status: str,
    version: int,
    containers: list[dict[str, Any]],
    desired_status: str | None = None,
    started_at: Moment | None = None,
    stop_code: str | None = None,
    stopped_reason: str | None = None,
    cluster_arn: str | None = None,
    started_by: str | None = None,
) -> dict[str, Any]:
    """Return the ``detail`` of a task-state event for ``task`` (a RunTask/DescribeTasks task) at one step.

    ``desired_status`` defaults to what ECS reports at ``last_status``; ``started_at`` is set once the task ran;
    a STOPPED event carries ``stoppedAt`` (now).
    """
    if desired_status is None:
        desired_status = "STOPPED" if last_status in STOPPING_STATUSES else "RUNNING"
    created = task.get("createdAt")
    detail: dict[str, Any] = {
        "clusterArn": task.get("clusterArn", cluster_arn),
        "containers": containers,
        "createdAt": iso(created if isinstance(created, datetime | float | int) else None),
        "desiredStatus": desired_status,
        "group": task.get("group", "family:airflow"),
        "lastStatus": last_status,
        "launchType": task.get("launchType", "FARGATE"),
        "overrides": task.get("overrides", {}),
        "startedBy": task.get("startedBy", started_by),
        "taskArn": task["taskArn"],
        "taskDefinitionArn": task.get("taskDefinitionArn"),
        "updatedAt": iso(),
        "version": version,
    }
    if started_at is not None:
        detail["startedAt"] = iso(started_at)
    if stop_code:
        detail["stopCode"] = stop_code
    if stopped_reason:
        detail["stoppedReason"] = stopped_reason
    if last_status == "STOPPED":
        detail["stoppedAt"] = iso()
    return detail


def eventbridge_event(
    source: str,
    detail_type: str,
    detail: dict[str, Any],
    *,
    resources: Iterable[str] = (),
    at: Moment | None = None,
    account: str = ACCOUNT,
    region: str = REGION,
) -> dict[str, Any]:
    """Return the EventBridge envelope around ``detail``, as a rule's target receives it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": iso(at),
        "region": region,
        "resources": list(resources),
        "detail": detail,
    }


def task_state_change(detail: dict[str, Any], *, at: Moment | None = None) -> dict[str, Any]:
    """Return the "ECS Task State Change" event around a task's ``detail``."""
    return eventbridge_event(ECS_SOURCE, TASK_STATE_CHANGE, detail, resources=[detail["taskArn"]], at=at)


def apply_input_path(body: str, path: str) -> str:
    """Return what a target with EventBridge ``InputPath`` (``$.a.b``) receives for an event body."""
    value: Any = json.loads(body)
    for part in path.removeprefix("$").strip(".").split("."):
        if part:
            value = value[part]
    return json.dumps(value)


# ------------------------------------------------------------------------------------------------ SQS


def sqs_record(
    *,
    message_id: str,
    receipt_handle: str,
    body: str,
    queue_arn: str,
    receive_count: int = 1,
    sent_timestamp: str = "0",
    first_receive_timestamp: str = "0",
    md5_of_body: str = "",
    region: str = REGION,
) -> dict[str, Any]:
    """Return one record of Lambda's SQS event."""
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": sent_timestamp,
            "SenderId": "harness",
            "ApproximateFirstReceiveTimestamp": first_receive_timestamp,
        },
        "messageAttributes": {},
        "md5OfBody": md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return Lambda's SQS event for ``records`` (see ``sqs_record``)."""
    return {"Records": list(records)}


def received_sqs_event(
    messages: Iterable[Mapping[str, Any]], queue_arn: str, *, extra_receives: int = 0
) -> dict[str, Any]:
    """Return Lambda's SQS event for ReceiveMessage output; ``extra_receives`` plays an earlier delivery."""
    return sqs_event(
        sqs_record(
            message_id=m["MessageId"],
            receipt_handle=m["ReceiptHandle"],
            body=m["Body"],
            queue_arn=queue_arn,
            receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) + extra_receives,
            sent_timestamp=m.get("Attributes", {}).get("SentTimestamp", "0"),
            first_receive_timestamp=m.get("Attributes", {}).get("ApproximateFirstReceiveTimestamp", "0"),
            md5_of_body=m.get("MD5OfBody", ""),
        )
        for m in messages
    )


# ------------------------------------------------------------------------------------------------ Lambda


def lambda_failure_record(
    function_name: str,
    event: Any,
    error: BaseException | None,
    *,
    invoke_count: int = 3,
    condition: str = "RetriesExhausted",
    at: Moment | None = None,
) -> dict[str, Any]:
    """Return the record Lambda sends an on-failure destination for an asynchronous invocation that failed
    (the documented "invocation record": request context, the event as ``requestPayload``, the error)."""
    return {
        "version": "1.0",
        "timestamp": iso(at),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": str(error) if error is not None else "",
            "errorType": type(error).__name__ if error is not None else "Error",
        },
    }


@dataclass
class LambdaContext:
    """The attributes Powertools reads from a Lambda context object; the remaining time counts down."""

    function_name: str = "test"
    memory_limit_in_mb: int = 256
    timeout_seconds: float = 300.0
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
