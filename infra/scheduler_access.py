"""The managed policies for Airflow's roles: the scheduler's (enqueue launches, read task state and logs) and the
API server's (read one launch's record and its container logs: nothing that launches)."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import nag

# Exactly what the executor calls; a test holds the policy to this list.
SCHEDULER_QUEUE_ACTIONS = ("sqs:SendMessage",)
SCHEDULER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:DescribeTable",
)
SCHEDULER_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
SCHEDULER_LOG_ACTIONS = ("logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams")
# What the log reader (ecs_event_executor.log_config, EcsEventExecutor.try_log) calls: one GetItem for the launch's
# record, GetLogEvents per container stream. A test holds the policy to this list.
LOG_READER_TABLE_ACTIONS = ("dynamodb:GetItem",)
LOG_READER_LOG_ACTIONS = ("logs:GetLogEvents",)
LOG_READER_KEY_ACTIONS = ("kms:Decrypt",)


def _airflow_role_policy(
    scope: Construct,
    *,
    description: str,
    statements: list[iam.PolicyStatement],
    log_group_arn: str,
    encryption_key_arn: str | None,
    key_sid: str,
    key_actions: tuple[str, ...],
) -> iam.ManagedPolicy:
    """Return a managed policy for one of Airflow's roles: ``statements``, plus ``key_actions`` on the stack's
    customer-managed key when there is one; every such policy reads the task log group."""
    policy = iam.ManagedPolicy(scope, "Policy", description=description, statements=statements)
    if encryption_key_arn is not None:
        policy.add_statements(
            iam.PolicyStatement(sid=key_sid, actions=list(key_actions), resources=[encryption_key_arn])
        )
    nag.acknowledge_wildcard_resource(
        policy,
        log_group_arn,
        "The existing task log group's ARN: the trailing :* is how IAM names the group's log streams, "
        "which GetLogEvents reads; no other log group is covered.",
    )
    return policy


class SchedulerAccess(Construct):
    """A managed policy to attach to the scheduler's role (its ARN is a stack output)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        queue_arn: str,
        table_arn: str,
        index_arn: str,
        log_group_arn: str,
        encryption_key_arn: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.policy = _airflow_role_policy(
            self,
            description="Airflow scheduler running the ECS event executor: send launches, read task state and logs",
            statements=[
                iam.PolicyStatement(
                    sid="SendLaunchRequests", actions=list(SCHEDULER_QUEUE_ACTIONS), resources=[queue_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadTaskState",
                    actions=list(SCHEDULER_TABLE_ACTIONS),
                    resources=[table_arn, index_arn],
                ),
                # The log group ARN ends in ":*", which covers its streams (GetLogEvents is per stream).
                iam.PolicyStatement(
                    sid="ReadTaskLogs", actions=list(SCHEDULER_LOG_ACTIONS), resources=[log_group_arn]
                ),
            ],
            log_group_arn=log_group_arn,
            encryption_key_arn=encryption_key_arn,
            # The stack's customer-managed key: SendMessage to the launch queue, reads of the table.
            key_sid="UseTheControlPlaneKey",
            key_actions=SCHEDULER_KEY_ACTIONS,
        )


class LogReaderAccess(Construct):
    """A managed policy for the Airflow API server's role: it serves task logs and never launches anything.

    The scheduler's policy would work there too (the launch queue's policy refuses senders outside
    ``schedulerRoleArns``), but a role that only reads cannot be turned into a launcher by a policy edit elsewhere.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        table_arn: str,
        log_group_arn: str,
        encryption_key_arn: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.policy = _airflow_role_policy(
            self,
            description="Airflow API server reading ECS event executor task logs: one launch record, its log streams",
            statements=[
                iam.PolicyStatement(
                    sid="ReadLaunchRecord", actions=list(LOG_READER_TABLE_ACTIONS), resources=[table_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadTaskLogs", actions=list(LOG_READER_LOG_ACTIONS), resources=[log_group_arn]
                ),
            ],
            log_group_arn=log_group_arn,
            encryption_key_arn=encryption_key_arn,
            key_sid="DecryptTheTable",
            key_actions=LOG_READER_KEY_ACTIONS,
        )
