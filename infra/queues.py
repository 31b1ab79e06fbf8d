"""SQS queues as every queue of this stack is made: encrypted at rest (SQS-managed, or the stack's customer-managed
KMS key) and TLS-only access."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import nag

# The longest SQS keeps a message: dead letters wait this long for an operator.
DEAD_LETTER_RETENTION = Duration.days(14)


def secure_queue(
    scope: Construct, id_: str, *, encryption_key: kms.IKey | None = None, **kwargs: object
) -> sqs.Queue:
    """Return a standard queue with a TLS-only queue policy, encrypted with ``encryption_key`` if given (the
    stack's ``kmsKeyArn``), else with SQS-managed SSE (no KMS key to grant)."""
    encryption = (
        {"encryption": sqs.QueueEncryption.KMS, "encryption_master_key": encryption_key}
        if encryption_key is not None
        else {"encryption": sqs.QueueEncryption.SQS_MANAGED}
    )
    return sqs.Queue(
        scope,
        id_,
        enforce_ssl=True,
        **encryption,
        **kwargs,  # type: ignore[arg-type]
    )


def dead_letter_queue(
    scope: Construct, id_: str, *, holds: str, encryption_key: kms.IKey | None = None
) -> sqs.Queue:
    """Return a queue where messages wait for a replay or an operator: a ``secure_queue`` kept
    DEAD_LETTER_RETENTION, with cdk-nag's SQS3 (a queue without a dead-letter queue of its own) acknowledged by
    ``holds``: what the queue holds and who watches it."""
    queue = secure_queue(scope, id_, retention_period=DEAD_LETTER_RETENTION, encryption_key=encryption_key)
    nag.acknowledge(queue, "AwsSolutions-SQS3", holds)
    return queue


def grant_send(queue: sqs.IQueue, grantee: iam.IGrantable) -> None:
    """Allow SendMessage on ``queue`` and, if it is KMS-encrypted, what a producer needs of its key (named
    actions: ``grant_send_messages`` adds ``kms:ReEncrypt*`` and ``kms:GenerateDataKey*``)."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn])
    )
    if queue.encryption_master_key is not None:
        queue.encryption_master_key.grant(grantee, "kms:GenerateDataKey", "kms:Decrypt")
