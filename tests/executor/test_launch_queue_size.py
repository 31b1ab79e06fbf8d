"""Issue 14: a batch too long for SQS is split; only a message over SQS's size limit fails, naming the limit."""

from __future__ import annotations

import boto3
import pytest
from ecs_event_executor.control.aws_errors import ErrorKind
from ecs_event_executor.control.messages import LaunchRequest
from ecs_event_executor.launch_queue import SQS_MAX_BYTES, LaunchQueue, message_bytes

from tests.executor.conftest import ExecutorEnv
from tests.support.aws import REGION, SqsBatchLimit
from tests.support.requests import launch_request

pytestmark = pytest.mark.compat


def sized(task_id: str, size: int) -> LaunchRequest:
    """Return a launch request whose message is about ``size`` bytes (a long workload command)."""
    request = launch_request(task_id)
    padding = size - message_bytes(request)
    return request.model_copy(update={"command": [*request.command, "x" * max(0, padding)]})


def test_ten_messages_too_long_together_are_all_sent_in_smaller_batches(executor_env: ExecutorEnv) -> None:
    client = boto3.client("sqs", region_name=REGION)
    limit = SqsBatchLimit().attach(client)
    messages = [sized(f"t{i}", 40_000) for i in range(10)]  # 400 KB together, 40 KB each
    result = LaunchQueue(client, executor_env.queue_url).send(messages)
    assert result.unsent == []
    assert sorted(m.to_json() for m in result.sent) == sorted(m.to_json() for m in messages)
    assert limit.refused == 0  # packed by size before sending: no call was refused


def test_a_batch_sqs_refuses_as_too_long_is_split_and_resent(executor_env: ExecutorEnv) -> None:
    """Even if the packing were wrong (a smaller queue limit), a BatchRequestTooLong is split, not failed."""
    client = boto3.client("sqs", region_name=REGION)
    limit = SqsBatchLimit(max_bytes=100_000).attach(client)
    messages = [sized(f"t{i}", 40_000) for i in range(5)]
    result = LaunchQueue(client, executor_env.queue_url).send(messages)
    assert result.unsent == [] and len(result.sent) == 5
    assert limit.refused >= 1


def test_only_a_message_over_the_limit_fails_naming_the_limit(executor_env: ExecutorEnv) -> None:
    client = boto3.client("sqs", region_name=REGION)
    messages = [sized(f"t{i}", 1_000) for i in range(9)] + [sized("huge", SQS_MAX_BYTES + 1)]
    result = LaunchQueue(client, executor_env.queue_url).send(messages)
    assert len(result.sent) == 9
    (unsent,) = result.unsent
    assert unsent.message.launch_id == messages[-1].launch_id  # type: ignore[union-attr]
    assert unsent.kind is ErrorKind.PERMANENT and str(SQS_MAX_BYTES) in unsent.reason
