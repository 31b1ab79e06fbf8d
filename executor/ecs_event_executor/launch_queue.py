"""Send control messages to the launch queue: SendMessageBatch, 10 a call and inside SQS's size limit, resending
only the failed entries; one loop's batches are sent concurrently (bounded), so the loop waits one round trip, not
one per batch."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ecs_event_executor.control.aws_errors import ErrorKind, classify, error_text
from ecs_event_executor.control.aws_errors import error_code as client_error_code
from ecs_event_executor.control.messages import AdoptRequest, CancelRequest, LaunchRequest, PingRequest

log = logging.getLogger(__name__)

# SQS accepts at most 10 entries per SendMessageBatch, and at most this many bytes in one message and in one
# whole batch (the launch queue keeps SQS's long-standing 256 KiB maximum message size).
SQS_BATCH_SIZE = 10
SQS_MAX_BYTES = 262_144
# What SQS answers when a batch's messages together are over the limit (the whole call is refused).
_BATCH_TOO_LONG = ("AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong")

# At most this many SendMessageBatch calls in flight at once: 100 messages (a busy loop's worth) in one round trip.
SEND_CONCURRENCY = 10

OutgoingMessage = LaunchRequest | CancelRequest | AdoptRequest | PingRequest


@dataclass(frozen=True)
class Unsent:
    """A message the queue did not accept, with why and whether sending it again can help."""

    message: OutgoingMessage
    reason: str
    kind: ErrorKind


@dataclass
class SendResult:
    sent: list[OutgoingMessage]
    unsent: list[Unsent]

    @property
    def credentials_failed(self) -> bool:
        return any(u.kind is ErrorKind.CREDENTIALS for u in self.unsent)


def message_group(message: OutgoingMessage) -> str:
    """Return the FIFO message group: all messages of one launch stay in order (launch before cancel)."""
    return getattr(message, "launch_id", None) or "ping"


class LaunchQueue:
    """The executor's only way to ask the control plane for anything."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        resend_rounds: int = 3,
        concurrency: int = SEND_CONCURRENCY,
        parallel_map: ParallelMap | None = None,
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self.resend_rounds = resend_rounds
        self.concurrency = max(1, concurrency)
        self._map = parallel_map or _threaded_map

    def _entry(self, index: int, message: OutgoingMessage) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": f"m{index}", "MessageBody": message.to_json()}
        if self.fifo:
            entry["MessageGroupId"] = message_group(message)
            # Resending the same body is the same message; a new queueing has a new launch id, so a new body.
            entry["MessageDeduplicationId"] = hashlib.sha256(entry["MessageBody"].encode()).hexdigest()
        return entry

    def send(self, messages: Sequence[OutgoingMessage]) -> SendResult:
        """Send ``messages``; never raises. Failed entries are resent (up to ``resend_rounds`` more calls each).

        A message over SQS's size limit is not sent (unsent, permanent, naming the limit); the others are packed
        into batches that fit.

        Batches go out concurrently, at most ``concurrency`` at a time (boto3 clients are thread-safe); what each
        returns is merged in the batches' order, so the result is the same as sending them one after another.
        """
        result = SendResult(sent=[], unsent=[])
        batches = self._batches(messages, result)
        credentials_failed = False

        def send_one(batch: list[OutgoingMessage]) -> SendResult:
            nonlocal credentials_failed
            own = SendResult(sent=[], unsent=[])
            if credentials_failed:
                # No point calling again with the same credentials; the caller rebuilds clients and retries.
                own.unsent.extend(
                    Unsent(m, "not sent: credentials failed", ErrorKind.CREDENTIALS) for m in batch
                )
                return own
            self._send_batch(batch, own)
            credentials_failed = credentials_failed or own.credentials_failed
            return own

        for own in self._map(send_one, batches, self.concurrency):
            result.sent.extend(own.sent)
            result.unsent.extend(own.unsent)
        return result

    def _batches(
        self, messages: Sequence[OutgoingMessage], result: SendResult
    ) -> list[list[OutgoingMessage]]:
        """Pack messages, in order, into batches of at most 10 and ``SQS_MAX_BYTES``; refuse any one too large."""
        batches: list[list[OutgoingMessage]] = []
        current: list[OutgoingMessage] = []
        current_bytes = 0
        for message in messages:
            size = message_bytes(message)
            if size > SQS_MAX_BYTES:
                result.unsent.append(Unsent(message, too_large(size), ErrorKind.PERMANENT))
                continue
            if current and (len(current) == SQS_BATCH_SIZE or current_bytes + size > SQS_MAX_BYTES):
                batches.append(current)
                current, current_bytes = [], 0
            current.append(message)
            current_bytes += size
        if current:
            batches.append(current)
        return batches

    def _send_batch(self, batch: list[OutgoingMessage], result: SendResult) -> None:
        pending = dict(enumerate(batch))
        last_reason: dict[int, tuple[str, ErrorKind]] = {}
        for _round in range(1 + self.resend_rounds):
            if not pending:
                return
            try:
                resp = self.client.send_message_batch(
                    QueueUrl=self.queue_url, Entries=[self._entry(i, m) for i, m in pending.items()]
                )
            except Exception as exc:
                if len(pending) > 1 and error_code(exc) in _BATCH_TOO_LONG:
                    # SQS refuses the whole batch when it is too long together: send it in halves.
                    rest = list(pending.values())
                    self._send_batch(rest[: len(rest) // 2], result)
                    self._send_batch(rest[len(rest) // 2 :], result)
                    return
                kind = classify(exc)
                result.unsent.extend(Unsent(m, error_text(exc), kind) for m in pending.values())
                return
            for ok in resp.get("Successful", []):
                result.sent.append(pending.pop(int(ok["Id"][1:])))
            for failed in resp.get("Failed", []):
                index = int(failed["Id"][1:])
                reason = f"{failed.get('Code', 'Error')}: {failed.get('Message', '')}".strip()
                if failed.get("SenderFault"):
                    # The message itself is wrong (too large, invalid characters): resending cannot help.
                    result.unsent.append(Unsent(pending.pop(index), reason, ErrorKind.PERMANENT))
                else:
                    last_reason[index] = (reason, ErrorKind.RETRYABLE)
        for index, message in pending.items():
            reason, kind = last_reason.get(index, ("not accepted by SQS", ErrorKind.RETRYABLE))
            result.unsent.append(Unsent(message, reason, kind))


Batch = list[OutgoingMessage]
# (send one batch, the batches, at most this many at once) -> each batch's result, in order.
ParallelMap = Callable[[Callable[[Batch], SendResult], Sequence[Batch], int], list[SendResult]]


def _threaded_map(
    send: Callable[[Batch], SendResult], batches: Sequence[Batch], limit: int
) -> list[SendResult]:
    workers = min(limit, len(batches))
    if workers <= 1:
        return [send(b) for b in batches]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="launch-queue") as pool:
        return list(pool.map(send, batches))


def message_bytes(message: OutgoingMessage) -> int:
    """Return the size SQS counts for a message: its body's UTF-8 bytes (no attributes are sent)."""
    return len(message.to_json().encode())


def too_large(size: int) -> str:
    """Return why a message is refused for its size, naming the limit."""
    return (
        f"the launch message is {size} bytes; SQS accepts at most {SQS_MAX_BYTES} bytes per message "
        "(the workload command and executor_config make up most of it)"
    )


def error_code(exc: BaseException) -> str:
    return client_error_code(exc) if isinstance(exc, ClientError) else ""
