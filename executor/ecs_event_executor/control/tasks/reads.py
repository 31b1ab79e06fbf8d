"""Reads of the tasks table: one item, many, an owner's change feed, the stale index, side items."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ecs_event_executor.control.aws_clients import lambda_client
from ecs_event_executor.control.messages import LaunchRequest
from ecs_event_executor.control.tasks.item import TaskItem, deserialize
from ecs_event_executor.control.tasks.schema import (
    ACTIVE_SHARD_VALUES,
    CHANGE_INDEX,
    DEFAULT_FINISHED_TTL_SECONDS,
    HEARTBEAT_KEY,
    STALE_INDEX,
    STALE_SHARDS,
    Attr,
    request_key,
)


class TaskReads:
    """Read task items. The client is injectable; the default is created lazily."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        finished_ttl_seconds: int = DEFAULT_FINISHED_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.finished_ttl_seconds = finished_ttl_seconds
        self._clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = lambda_client("dynamodb")
        return self._client

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def get(self, launch_id: str, *, consistent: bool = True) -> TaskItem | None:
        """Return one item, or None."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": launch_id}}, ConsistentRead=consistent
        )
        return TaskItem.from_raw(resp["Item"]) if "Item" in resp else None

    def get_many(
        self, launch_ids: Iterable[str], *, consistent: bool = True, attributes: Iterable[str] = ()
    ) -> dict[str, TaskItem]:
        """Return the items that exist among ``launch_ids`` (BatchGetItem, 100 keys a call).

        ``consistent`` False reads eventually consistent (half the read units); ``attributes`` reads only those
        (with the key and the state, which every item has): the fields not read keep their defaults.
        """
        ids = list(dict.fromkeys(launch_ids))
        found: dict[str, TaskItem] = {}
        keys_and_attributes: dict[str, Any] = {"ConsistentRead": consistent}
        wanted = list(dict.fromkeys((Attr.PK, Attr.STATE, *attributes))) if attributes else []
        if wanted:
            names = {f"#a{i}": name for i, name in enumerate(wanted)}
            keys_and_attributes.update(ProjectionExpression=", ".join(names), ExpressionAttributeNames=names)
        # DynamoDB reads at most 100 keys per BatchGetItem.
        for start in range(0, len(ids), 100):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{Attr.PK: {"S": i}} for i in ids[start : start + 100]],
                    **keys_and_attributes,
                }
            }
            while request:
                resp = self.client.batch_get_item(RequestItems=request)
                for raw in resp.get("Responses", {}).get(self.table_name, []):
                    item = TaskItem.from_raw(raw)
                    found[item.launch_id] = item
                request = resp.get("UnprocessedKeys") or {}
        return found

    def changes_since(
        self, owner: str, since_ms: int, *, newest_first: bool = False, page_size: int | None = None
    ) -> Iterator[list[TaskItem]]:
        """Yield pages of the owner's items whose last write is at or after ``since_ms`` (oldest first, or newest
        first), ``page_size`` items a page if given.

        The index is eventually consistent and writers' clocks differ, so callers read with an overlap and drop
        what they saw already by ``rev``.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": CHANGE_INDEX,
            "KeyConditionExpression": "#o = :o AND #c >= :c",
            "ExpressionAttributeNames": {"#o": Attr.OWNER, "#c": Attr.CHANGED_AT},
            "ExpressionAttributeValues": {":o": {"S": owner}, ":c": {"N": str(since_ms)}},
        }
        if newest_first:
            kwargs["ScanIndexForward"] = False
        if page_size is not None:
            kwargs["Limit"] = page_size
        while True:
            resp = self.client.query(**kwargs)
            yield [TaskItem.from_raw(raw) for raw in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def items_by_state(self, owner: str, *, since_ms: int = 0) -> list[TaskItem]:
        """Return every item of an owner changed since ``since_ms`` (operator tooling; pages through)."""
        return [item for page in self.changes_since(owner, since_ms) for item in page]

    def read_request(self, launch_id: str) -> LaunchRequest | None:
        """Return the launch request kept for ``launch_id`` (for a relaunch), or None if it is gone."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": request_key(launch_id)}}, ConsistentRead=True
        )
        item = resp.get("Item", {})
        raw = item.get(Attr.REQUEST, {}).get("B")
        if raw is None:
            return None
        expires_at = item.get(Attr.EXPIRES_AT, {}).get("N")
        # DynamoDB deletes an expired item only later: past its expiry the request (and its token) is gone.
        if expires_at is not None and int(expires_at) * 1000 <= self._now_ms():
            return None
        return LaunchRequest.model_validate_json(zlib.decompress(raw))

    def stale_pages(self, older_than_ms: int, *, page_size: int = 1000) -> Iterator[list[TaskItem]]:
        """Yield pages of active items not checked since ``older_than_ms``, until every shard is read.

        Each page takes up to ``page_size / STALE_SHARDS`` keys from every shard of the stale index (least
        recently checked first within a shard, so no shard waits for another), then reads the items themselves
        with BatchGetItem (strongly consistent); items that finished since the index was written are left out.
        """
        per_shard = max(1, -(-page_size // STALE_SHARDS))
        next_start: dict[str, dict[str, Any] | None] = dict.fromkeys(ACTIVE_SHARD_VALUES)
        while next_start:
            keys: list[str] = []
            for shard, start in list(next_start.items()):
                kwargs: dict[str, Any] = {
                    "TableName": self.table_name,
                    "IndexName": STALE_INDEX,
                    "KeyConditionExpression": "#act = :act AND #c < :c",
                    "ExpressionAttributeNames": {"#act": Attr.ACTIVE, "#c": Attr.CHECKED_AT},
                    "ExpressionAttributeValues": {":act": {"S": shard}, ":c": {"N": str(older_than_ms)}},
                    "Limit": per_shard,
                }
                if start is not None:
                    kwargs["ExclusiveStartKey"] = start
                resp = self.client.query(**kwargs)
                keys.extend(raw[Attr.PK]["S"] for raw in resp.get("Items", []))
                if "LastEvaluatedKey" in resp:
                    next_start[shard] = resp["LastEvaluatedKey"]
                else:
                    del next_start[shard]
            if not keys:
                continue
            items = self.get_many(keys)
            yield [items[k] for k in keys if k in items and not items[k].state.terminal]

    def stale_active(self, older_than_ms: int, *, limit: int = 500) -> list[TaskItem]:
        """Return up to ``limit`` active items not checked since ``older_than_ms`` (see ``stale_pages``)."""
        found: list[TaskItem] = []
        for page in self.stale_pages(older_than_ms, page_size=min(limit, 1000)):
            found.extend(page)
            if len(found) >= limit:
                break
        return found[:limit]

    def active_items(self, *, limit: int = 10_000) -> list[TaskItem]:
        """Return up to ``limit`` items of the stale index, of every owner: launches waiting without an ECS task
        (operator tooling: the feed shows outcomes only; ECS lists the running tasks)."""
        return self.stale_active(2**62, limit=limit)

    def read_heartbeat(self) -> dict[str, Any] | None:
        """Return the last heartbeat (``heartbeat_at`` epoch ms and facts), or None if none was written."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": HEARTBEAT_KEY}}, ConsistentRead=True
        )
        return deserialize(resp["Item"]) if "Item" in resp else None
