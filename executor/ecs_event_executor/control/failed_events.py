"""Replay the ECS events whose status invocation failed: the status function's on-failure destination queue.

The ECS rule invokes the status function asynchronously, one event each. When an invocation fails (a throttled
table, a timeout, a bug) Lambda retries it twice, then sends its record of the invocation to the failed-events
queue: the event as ``requestPayload``, the error as ``responsePayload``, why in ``requestContext.condition``
(``RetriesExhausted`` or ``EventAgeExceeded``). Nothing is discarded: the reconciler calls ``replay`` on each pass.

Each message is applied through the status tracker's own conditional writes (a replayed event older than what
the item holds is ``Stale``, so replaying late or twice is safe) and deleted only once applied. A replay that fails
stays: it is hidden for ``HIDE_SECONDS`` and the next pass tries it again. A message that cannot be an ECS event
(not JSON, neither Lambda's record nor an event, or an event the model refuses) stays as well, with its reason in
the log: the queue is a dead-letter store (alarmed when not empty, 14 days' retention), and ``replay-dlq --dry-run``
lists it with the reason; the operator drops it. Neither kind blocks the rest: a kept message is hidden while the
pass reads on. A pass stops at its deadline.

An ECS event taken as it is (not inside Lambda's record) is accepted too: what ``replay-dlq`` moves here from the
rule's target dead-letter queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecs_event_executor.control.status_tracking import StatusResult, StatusTracker

log = logging.getLogger(__name__)

# SQS's most per ReceiveMessage and per DeleteMessageBatch.
BATCH = 10
# A message kept by this pass (its replay failed, or it is malformed) is hidden this long, so the pass reads past
# it and the next pass (every few minutes) tries it again.
HIDE_SECONDS = 120
# The key of Lambda's invocation record that holds the event the function was invoked with.
REQUEST_PAYLOAD = "requestPayload"


class MalformedFailedEvent(ValueError):
    """A failed-events message that holds no ECS event; the message says why."""


@dataclass
class ReplayReport:
    replayed: int = 0  # applied (whatever the tracker decided: applied, finished, stale...) and deleted
    kept: int = 0  # the replay failed: tried again on the next pass
    malformed: int = 0  # no ECS event in it: kept for the operator, with the reason logged
    reasons: list[str] = field(default_factory=list)


def event_of(body: str) -> Mapping[str, Any]:
    """Return the ECS event a failed-events message carries: Lambda's record's ``requestPayload``, or the event."""
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise MalformedFailedEvent(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedFailedEvent(f"a JSON {type(raw).__name__}, not an object")
    event = raw.get(REQUEST_PAYLOAD, raw)
    if not isinstance(event, dict) or "detail" not in event:
        raise MalformedFailedEvent("neither Lambda's invocation record nor an ECS event")
    return event


def failure_of(body: str) -> str:
    """Return what Lambda recorded about the failure (condition and error), for the log and ``replay-dlq``."""
    try:
        raw = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(raw, dict) or REQUEST_PAYLOAD not in raw:
        return ""
    condition = (raw.get("requestContext") or {}).get("condition", "")
    response = raw.get("responsePayload") or {}
    error = f"{response.get('errorType', '')}: {response.get('errorMessage', '')}" if response else ""
    return " - ".join(p for p in (condition, error) if p)


class FailedEvents:
    """The failed-events queue and how to apply what it holds; the SQS client is injectable."""

    def __init__(
        self, queue_url: str, tracker: StatusTracker, sqs: Any, *, hide_seconds: int = HIDE_SECONDS
    ) -> None:
        self.queue_url = queue_url
        self.tracker = tracker
        self.sqs = sqs
        self.hide_seconds = hide_seconds

    def replay(self, out_of_time: Callable[[], bool] = lambda: False) -> ReplayReport:
        """Apply the queue's events until it is empty (for this pass) or ``out_of_time()``; see the module."""
        report = ReplayReport()
        seen: set[str] = set()
        while not out_of_time():
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=BATCH,
                VisibilityTimeout=self.hide_seconds,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            # A message kept earlier in this pass that is visible again (a long pass): the pass has read the rest.
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update(m["MessageId"] for m in fresh)
            applied = [m for m in fresh if self._apply(m, report)]
            if applied:
                self._delete(applied)
        if report.replayed or report.kept or report.malformed:
            log.warning(
                "replayed failed ECS events",
                extra={
                    "replayed": report.replayed,
                    "kept": report.kept,
                    "malformed": report.malformed,
                    "reasons": report.reasons[:5],
                },
            )
        return report

    def _apply(self, message: Mapping[str, Any], report: ReplayReport) -> bool:
        """Apply one message's event; return True when it may be deleted."""
        body = message.get("Body", "")
        try:
            event = event_of(body)
            result = self.tracker.handle(event)
        except MalformedFailedEvent as exc:
            report.malformed += 1
            report.reasons.append(f"{message.get('MessageId')}: {exc}")
            return False
        except Exception as exc:
            report.kept += 1
            report.reasons.append(f"{message.get('MessageId')}: {type(exc).__name__}: {exc}")
            return False
        if result is StatusResult.MALFORMED:
            report.malformed += 1
            report.reasons.append(f"{message.get('MessageId')}: the ECS event model refused it")
            return False
        report.replayed += 1
        return True

    def _delete(self, messages: list[Mapping[str, Any]]) -> None:
        """Delete the applied messages; one that SQS did not delete is applied again later (harmless: Stale)."""
        response = self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        if response.get("Failed"):
            log.warning(
                "failed events not deleted; replayed again later", extra={"failed": response["Failed"]}
            )
