"""Registration items: which task definition revision the launchers run for each derived family, and its last use.

One item per derived family (``task-definition#<family>``, in no index): created by the conditional claim of the
launcher that registers the family (so racing launchers register it once), completed with the revision's ARN,
stamped ``last_used_at`` when a launcher uses it (at most once per ``USE_STAMP_MS`` per launcher), and deleted by the
reconciler, on the condition that nobody used it since it looked, before it deregisters the family's revisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ecs_event_executor.control.aws_clients import lambda_client
from ecs_event_executor.control.tasks.item import deserialize, serialize
from ecs_event_executor.control.tasks.schema import Attr, registration_key


@dataclass(frozen=True)
class Registration:
    """One registration item: the family, its revision's ARN (None while being registered), times in epoch ms."""

    family: str
    task_definition_arn: str | None
    last_used_at: int
    lease_until: int | None


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Registrations:
    """Read and conditionally write registration items of the tasks table."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self._client = client
        # The launcher shares its TaskTable's client (boto3 client creation is not thread-safe).
        self._client_factory = client_factory or (lambda: lambda_client("dynamodb"))
        self._clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def get(self, family: str) -> Registration | None:
        """Return the family's registration (a consistent read), or None."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": registration_key(family)}}, ConsistentRead=True
        )
        return _registration(family, resp["Item"]) if "Item" in resp else None

    def get_many(self, families: Iterable[str]) -> dict[str, Registration]:
        """Return the registrations that exist among ``families`` (BatchGetItem, 100 keys a call)."""
        wanted = list(dict.fromkeys(families))
        found: dict[str, Registration] = {}
        for start in range(0, len(wanted), 100):
            keys = [{Attr.PK: {"S": registration_key(f)}} for f in wanted[start : start + 100]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                resp = self.client.batch_get_item(RequestItems=request)
                for raw in resp.get("Responses", {}).get(self.table_name, []):
                    family = raw[Attr.PK]["S"].split("#", 1)[1]
                    found[family] = _registration(family, raw)
                request = resp.get("UnprocessedKeys") or {}
        return found

    def claim(self, family: str, *, lease_seconds: float) -> bool:
        """Take the right to register ``family``: only if nobody registered it and no live claim holds it."""
        now = self._now_ms()
        item = {
            Attr.PK: registration_key(family),
            Attr.LEASE_UNTIL: now + int(lease_seconds * 1000),
            Attr.LAST_USED_AT: now,
        }
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(#pk) OR "
                "(attribute_not_exists(#arn) AND #lease < :now)",
                ExpressionAttributeNames={
                    "#pk": Attr.PK,
                    "#arn": Attr.TASK_DEFINITION_ARN,
                    "#lease": Attr.LEASE_UNTIL,
                },
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def record(self, family: str, task_definition_arn: str) -> None:
        """Record the revision registered (or found) for ``family`` by the claim's holder."""
        self.client.update_item(
            TableName=self.table_name,
            Key={Attr.PK: {"S": registration_key(family)}},
            UpdateExpression="SET #arn = :arn, #used = :now REMOVE #lease",
            ExpressionAttributeNames={
                "#arn": Attr.TASK_DEFINITION_ARN,
                "#used": Attr.LAST_USED_AT,
                "#lease": Attr.LEASE_UNTIL,
            },
            ExpressionAttributeValues={
                ":arn": {"S": task_definition_arn},
                ":now": {"N": str(self._now_ms())},
            },
        )

    def adopt(self, family: str, task_definition_arn: str) -> bool:
        """Record a family found in ECS with no item (its item was lost): its unused time starts now.

        An UpdateItem that creates the item (the reconciler writes no item with PutItem)."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={Attr.PK: {"S": registration_key(family)}},
                UpdateExpression="SET #arn = :arn, #used = :now",
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={
                    "#pk": Attr.PK,
                    "#arn": Attr.TASK_DEFINITION_ARN,
                    "#used": Attr.LAST_USED_AT,
                },
                ExpressionAttributeValues={
                    ":arn": {"S": task_definition_arn},
                    ":now": {"N": str(self._now_ms())},
                },
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def mark_used(self, family: str, task_definition_arn: str) -> bool:
        """Stamp a use of the family's revision; False when the item is gone or names another revision (the
        reconciler deregistered it): the caller registers again."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={Attr.PK: {"S": registration_key(family)}},
                UpdateExpression="SET #used = :now",
                ConditionExpression="#arn = :arn",
                ExpressionAttributeNames={"#used": Attr.LAST_USED_AT, "#arn": Attr.TASK_DEFINITION_ARN},
                ExpressionAttributeValues={
                    ":now": {"N": str(self._now_ms())},
                    ":arn": {"S": task_definition_arn},
                },
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def forget_unused(self, registration: Registration) -> bool:
        """Delete a registration on the condition that nobody used it since it was read; False when somebody did."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={Attr.PK: {"S": registration_key(registration.family)}},
                ConditionExpression="#used = :seen AND attribute_exists(#arn)",
                ExpressionAttributeNames={"#used": Attr.LAST_USED_AT, "#arn": Attr.TASK_DEFINITION_ARN},
                ExpressionAttributeValues={":seen": {"N": str(registration.last_used_at)}},
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True


def _registration(family: str, raw: dict[str, Any]) -> Registration:
    values = deserialize(raw)
    lease = values.get(Attr.LEASE_UNTIL)
    return Registration(
        family=family,
        task_definition_arn=values.get(Attr.TASK_DEFINITION_ARN),
        last_used_at=int(values.get(Attr.LAST_USED_AT, 0)),
        lease_until=int(lease) if lease is not None else None,
    )
