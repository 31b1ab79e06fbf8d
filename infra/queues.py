"""SQS queues as every queue of this stack is made: SQS-managed encryption and TLS-only access."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# The longest SQS keeps a message: dead letters wait this long for an operator.
DEAD_LETTER_RETENTION = Duration.days(14)


def secure_queue(scope: Construct, id_: str, **kwargs: object) -> sqs.Queue:
    """Return a standard queue with SQS-managed SSE (no KMS key to grant) and a TLS-only queue policy."""
    return sqs.Queue(
        scope,
        id_,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        **kwargs,  # type: ignore[arg-type]
    )
