"""The tasks table: one item per launch, written by the Lambdas, read by the executor through the change index."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct
from ecs_event_executor.control.task_item import CHANGE_INDEX, CHANGE_INDEX_ATTRIBUTES, Attr


class TasksTable(Construct):
    """On-demand, point-in-time recovery, AWS-managed encryption, TTL on finished items, the change-feed index.

    The table is retained when the stack is deleted: it holds the only record of running tasks.
    """

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=Attr.PK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            # An AWS-managed key: encrypted at rest, and readers need no KMS permission of their own.
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=Attr.EXPIRES_AT,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table.add_global_secondary_index(
            index_name=CHANGE_INDEX,
            partition_key=dynamodb.Attribute(name=Attr.OWNER, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=Attr.CHANGED_AT, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(CHANGE_INDEX_ATTRIBUTES),
        )
        self.index_name = CHANGE_INDEX
        self.index_arn = f"{self.table.table_arn}/index/{CHANGE_INDEX}"

    def grant_item_actions(self, grantee: iam.IGrantable, *actions: str) -> None:
        """Allow item-level ``actions`` (GetItem, PutItem, ...) on the table, and nothing on its indexes."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=[f"dynamodb:{a}" for a in actions], resources=[self.table.table_arn])
        )

    def grant_change_feed_query(self, grantee: iam.IGrantable) -> None:
        """Allow Query on the change-feed index only."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[self.index_arn])
        )
