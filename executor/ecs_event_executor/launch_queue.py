"""Send control messages to the launch queue: SendMessageBatch, 10 a call, resending only the failed entries."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ecs_event_executor.control.aws_errors import ErrorKind, classify, error_text
from ecs_event_executor.control.messages import AdoptRequest, CancelRequest, LaunchRequest, PingRequest

log = logging.getLogger(__name__)

# SQS accepts at most 10 entries per SendMessageBatch.
SQS_BATCH_SIZE = 10

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

    def __init__(self, client: Any, queue_url: str, *, resend_rounds: int = 3) -> None:
        self.client = client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self.resend_rounds = resend_rounds

    def _entry(self, index: int, message: OutgoingMessage) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": f"m{index}", "MessageBody": message.to_json()}
        if self.fifo:
            entry["MessageGroupId"] = message_group(message)
            # Resending the same body is the same message; a new queueing has a new launch id, so a new body.
            entry["MessageDeduplicationId"] = hashlib.sha256(entry["MessageBody"].encode()).hexdigest()
        return entry

    def send(self, messages: Sequence[OutgoingMessage]) -> SendResult:
        """Send ``messages``; never raises. Failed entries are resent (up to ``resend_rounds`` more calls each)."""
        result = SendResult(sent=[], unsent=[])
        for start in range(0, len(messages), SQS_BATCH_SIZE):
            batch = list(messages[start : start + SQS_BATCH_SIZE])
            if result.credentials_failed:
                # No point calling again with the same credentials; the caller rebuilds clients and retries.
                result.unsent.extend(
                    Unsent(m, "not sent: credentials failed", ErrorKind.CREDENTIALS) for m in batch
                )
                continue
            self._send_batch(batch, result)
        return result

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
