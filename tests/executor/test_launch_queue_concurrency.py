"""Issue 19 P2: one loop's SendMessageBatch calls go out together (bounded); what each batch did is unchanged."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecs_event_executor.control.aws_errors import ErrorKind
from ecs_event_executor.launch_queue import LaunchQueue, OutgoingMessage

from tests.support.requests import launch_request

pytestmark = pytest.mark.compat

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/airflow-launch"


def ids(messages: list[OutgoingMessage]) -> list[str]:
    return [getattr(m, "launch_id", "") for m in messages]


class BarrierClient:
    """Answers SendMessageBatch only once ``together`` calls are in flight at the same time (or fails after 10 s:
    calls made one after another never meet). Optionally refuses one batch, as SQS does when throttled."""

    def __init__(self, together: int, *, refuse_batch_with: str | None = None) -> None:
        self.barrier = threading.Barrier(together, timeout=10)
        self.refuse_batch_with = refuse_batch_with
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.barrier.wait()
        finally:
            with self.lock:
                self.in_flight -= 1
        if self.refuse_batch_with and any(self.refuse_batch_with in e["MessageBody"] for e in Entries):
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "SendMessageBatch"
            )
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_a_loops_batches_are_in_flight_together() -> None:
    messages = [launch_request(f"t{i:02d}") for i in range(40)]  # 4 batches
    client = BarrierClient(together=4)

    result = LaunchQueue(client, QUEUE_URL).send(messages)

    assert client.most_in_flight == 4  # one after another, the barrier breaks and nothing is sent
    assert ids(result.sent) == ids(list(messages))  # the batches' order
    assert result.unsent == []


def test_concurrency_is_bounded() -> None:
    messages = [launch_request(f"t{i:02d}") for i in range(60)]  # 6 batches, 3 at a time
    client = BarrierClient(together=3)

    result = LaunchQueue(client, QUEUE_URL, concurrency=3).send(messages)

    assert client.most_in_flight == 3 and len(result.sent) == 60


def test_a_failed_batch_leaves_only_its_messages_to_retry_in_order() -> None:
    messages = [launch_request(f"t{i:02d}") for i in range(30)]  # 3 batches; the second is refused
    client = BarrierClient(together=3, refuse_batch_with=messages[10].launch_id)

    result = LaunchQueue(client, QUEUE_URL).send(messages)

    assert ids(result.sent) == ids([*messages[:10], *messages[20:]])
    assert ids([u.message for u in result.unsent]) == ids(list(messages[10:20]))
    assert all(u.kind is ErrorKind.RETRYABLE for u in result.unsent)
