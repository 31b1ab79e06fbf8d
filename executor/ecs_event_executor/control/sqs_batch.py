"""Read an SQS event source's batch and answer it with a partial batch response: the Lambdas' one SQS contract.

Powertools' batch utility and its ``SQSRecord`` would do the same, but importing either loads the batch package
(asyncio) and every event data class: about 40 ms of each cold start for a dict lookup per field. The shapes are
AWS's: an ``SQSEvent``'s records in, ``{"batchItemFailures": [{"itemIdentifier": <message id>}]}`` out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


class BatchFailed(Exception):
    """Every message of the batch failed: the invocation errors (the function's error alarm fires) and SQS
    delivers them all again, as Powertools' ``process_partial_response`` does."""


@dataclass(frozen=True)
class SqsRecord:
    """The fields of one SQS event source record the handlers read."""

    message_id: str
    body: str
    receive_count: int
    receipt_handle: str
    event_source_arn: str

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> SqsRecord:
        """Read one record of the event source's ``Records``."""
        attributes = raw.get("attributes") or {}
        return cls(
            message_id=raw["messageId"],
            body=raw.get("body") or "",
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
            receipt_handle=raw.get("receiptHandle") or "",
            event_source_arn=raw.get("eventSourceARN") or "",
        )


def records(event: Mapping[str, Any]) -> list[SqsRecord]:
    """Return the batch's records, in order."""
    return [SqsRecord.of(raw) for raw in event.get("Records") or []]


def response(failed: Iterable[SqsRecord]) -> PartialBatchResponse:
    """Return the partial batch response that hands ``failed`` back to the queue."""
    return {"batchItemFailures": [{"itemIdentifier": r.message_id} for r in failed]}


def process(batch: list[SqsRecord], apply: Callable[[SqsRecord], object]) -> PartialBatchResponse:
    """Apply each record; a record whose ``apply`` raises is reported failed, never failing its batch-mates.

    Raises BatchFailed when every record failed.
    """
    failed: list[SqsRecord] = []
    for record in batch:
        try:
            apply(record)
        except Exception:
            failed.append(record)
    if batch and len(failed) == len(batch):
        raise BatchFailed(f"all {len(batch)} messages of the batch failed")
    return response(failed)
