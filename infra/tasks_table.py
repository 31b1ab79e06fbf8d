"""The tasks table: one item per launch, written by the Lambdas, read by the executor and the reconciler by index.

Keys, indexes and projections come from the contract's ``table_definition()`` (``ecs_event_executor.control.
tasks.schema``), the same CreateTable arguments the tests and the local mode use, so the stack cannot drift from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from ecs_event_executor.control.tasks.schema import CHANGE_INDEX, STALE_INDEX, Attr, table_definition

_ATTRIBUTE_TYPES: Mapping[str, dynamodb.AttributeType] = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS: Mapping[str, dynamodb.ProjectionType] = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}


def _keys(
    key_schema: list[dict[str, str]], types: Mapping[str, str]
) -> tuple[dynamodb.Attribute, dynamodb.Attribute | None]:
    """Return (partition key, sort key or None) of a CreateTable key schema."""
    by_role = {
        k["KeyType"]: dynamodb.Attribute(
            name=k["AttributeName"], type=_ATTRIBUTE_TYPES[types[k["AttributeName"]]]
        )
        for k in key_schema
    }
    return by_role["HASH"], by_role.get("RANGE")


class TasksTable(Construct):
    """On-demand, point-in-time recovery, encrypted, TTL on finished items and requests, the contract's indexes.

    The table is retained when the stack is deleted: it holds the only record of running tasks. Launch requests
    (with their workload tokens) expire when their launch can no longer start; point-in-time recovery keeps
    ``recovery_days`` of history (0: off), so backups do not keep tokens longer than that.
    """

    def __init__(
        self, scope: Construct, id_: str, *, encryption_key: kms.IKey | None = None, recovery_days: int = 1
    ) -> None:
        super().__init__(scope, id_)
        self.encryption_key = encryption_key
        # The name is CloudFormation's to choose; only the keys, indexes and projections are taken from here.
        definition: dict[str, Any] = table_definition("unused")
        types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
        partition_key, sort_key = _keys(definition["KeySchema"], types)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=partition_key,
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            # An AWS-managed key unless the stack names one: encrypted at rest, and readers need no KMS permission
            # of their own. With the stack's key, key policy and grants decide who reads.
            encryption=(
                dynamodb.TableEncryption.CUSTOMER_MANAGED
                if encryption_key is not None
                else dynamodb.TableEncryption.AWS_MANAGED
            ),
            encryption_key=encryption_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=recovery_days > 0,
                recovery_period_in_days=recovery_days if recovery_days > 0 else None,
            ),
            time_to_live_attribute=Attr.EXPIRES_AT,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in definition["GlobalSecondaryIndexes"]:
            index_partition, index_sort = _keys(index["KeySchema"], types)
            projection = index["Projection"]
            self.table.add_global_secondary_index(
                index_name=index["IndexName"],
                partition_key=index_partition,
                sort_key=index_sort,
                projection_type=_PROJECTIONS[projection["ProjectionType"]],
                non_key_attributes=projection.get("NonKeyAttributes"),
            )
        # The executor's change feed (by owner, by change time) and the reconciler's stale index (active items).
        self.index_name = CHANGE_INDEX
        self.index_arn = self.index_arn_of(CHANGE_INDEX)
        self.stale_index_arn = self.index_arn_of(STALE_INDEX)

    def index_arn_of(self, index_name: str) -> str:
        """Return the ARN of one of the table's indexes (IAM names an index as ``<table-arn>/index/<name>``)."""
        return f"{self.table.table_arn}/index/{index_name}"

    def grant_item_actions(self, grantee: iam.IGrantable, *actions: str) -> None:
        """Allow item-level ``actions`` (GetItem, PutItem, ...) on the table, and nothing on its indexes (with the
        stack's KMS key, its use for them too)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=[f"dynamodb:{a}" for a in actions], resources=[self.table.table_arn])
        )
        self._grant_key(grantee, writes=any(not a.startswith(("Get", "BatchGet", "Query")) for a in actions))

    def _grant_key(self, grantee: iam.IGrantable, *, writes: bool) -> None:
        """Allow the stack's key for the table (named actions: ``grant_encrypt_decrypt`` would add wildcards)."""
        if self.encryption_key is None:
            return
        actions = ["kms:Decrypt", "kms:DescribeKey"]
        if writes:
            actions += ["kms:Encrypt", "kms:GenerateDataKey"]
        self.encryption_key.grant(grantee, *actions)

    def grant_stale_index_query(self, grantee: iam.IGrantable) -> None:
        """Allow Query on the stale index only (the reconciler reads active items that stopped changing)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[self.stale_index_arn])
        )
        self._grant_key(grantee, writes=False)
