"""Drive the executor's change feed against moto with writers whose clocks differ from the reader's.

Each change is one conditional write (a launch cancelled before it started: it creates the item CANCELLED and
stamps ``changed_at``) by a writer ``TaskTable`` whose clock is the simulated time plus that writer's skew. The
change index's lag is emulated at the botocore level: a Query does not return an item until its lag has passed.
The reader reads once per simulated second, with its own (unskewed) clock, as the executor's sync() does.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from ecs_event_executor.change_feed import FeedRead
from ecs_event_executor.control.messages import CancelRequest
from ecs_event_executor.control.tasks.table import TaskTable

from tests.support.aws import REGION

OWNER = "default:feed"


class Feed(Protocol):
    def read(self, table: TaskTable, *, now_ms: int) -> FeedRead: ...


class ReaderClockFeed:
    """The window of commit b84b779, for comparison: it followed the reader's clock (max(newest stamp, now))."""

    def __init__(self, owner: str, *, start_ms: int, overlap_ms: int) -> None:
        self.owner = owner
        self.overlap_ms = overlap_ms
        self.watermark_ms = start_ms
        self._seen: dict[str, int] = {}

    def read(self, table: TaskTable, *, now_ms: int) -> FeedRead:
        items, pages = [], 0
        for page in table.changes_since(self.owner, max(0, self.watermark_ms - self.overlap_ms)):
            pages += 1
            for item in page:
                if self._seen.get(item.launch_id, -1) < item.rev:
                    self._seen[item.launch_id] = item.rev
                    items.append(item)
                    self.watermark_ms = max(self.watermark_ms, item.changed_at)
        self.watermark_ms = max(self.watermark_ms, now_ms)
        return FeedRead(items=items, pages=pages)


@dataclass
class FeedRun:
    changes: int
    returned: set[str] = field(default_factory=set)
    queries: int = 0
    reads: int = 0
    idle_items: int = 0  # items the Query returned in the last ``idle_reads`` reads (all seen already)
    idle_reads: int = 0

    @property
    def missed(self) -> int:
        return self.changes - len(self.returned)


class SkewedWriters:
    """Writers with clock skews, and an index that shows each write after a lag."""

    def __init__(self, table_name: str, *, start: float, rng: random.Random) -> None:
        self.table_name = table_name
        self.now = start  # simulated time (seconds), the reader's clock
        self.rng = rng
        self.visible_at: dict[str, float] = {}
        self.client = boto3.client("dynamodb", region_name=REGION)
        self.reader = TaskTable(table_name, client=self._reader_client())

    def _reader_client(self) -> Any:
        client = boto3.client("dynamodb", region_name=REGION)
        client.meta.events.register("after-call.dynamodb.Query", self._hide_lagging)
        return client

    def _hide_lagging(self, parsed: dict[str, Any], **_: Any) -> None:
        parsed["Items"] = [
            i for i in parsed.get("Items", []) if self.visible_at.get(i["pk"]["S"], 0.0) <= self.now
        ]

    def write(self, skew: float, lag: float) -> str:
        """Write one change now, stamped by a clock ``skew`` seconds off, visible to Query after ``lag``."""
        launch_id = uuid.uuid4().hex[:24] + "-1-feed"
        self.visible_at[launch_id] = self.now + lag
        table = TaskTable(self.table_name, client=self.client, clock=lambda: self.now + skew)
        written, _ = table.finish_cancelled(CancelRequest(launch_id=launch_id, owner=OWNER, reason="sim"))
        assert written
        return launch_id


def run_feed(
    feed: Feed,
    world: SkewedWriters,
    *,
    skews: list[float],
    changes: int,
    duration: float = 120.0,
    max_lag: float = 2.0,
    quiet_after: float = 60.0,
    idle_reads: int = 5,
) -> FeedRun:
    """Write ``changes`` changes over ``duration`` seconds, each by a writer with one of ``skews``; read once a
    second through the writes and ``quiet_after`` seconds beyond; count what the feed returned."""
    start = world.now
    due = sorted(start + world.rng.uniform(0, duration) for _ in range(changes))
    run = FeedRun(changes=changes)
    counter = {"Query": 0, "items": 0}

    def count(**_: Any) -> None:
        counter["Query"] += 1

    def count_items(parsed: dict[str, Any], **_: Any) -> None:
        counter["items"] += len(parsed.get("Items", []))

    world.reader.client.meta.events.register("before-call.dynamodb.Query", count)
    # Registered after the lag emulation: counts what the Query returned once lagging items are hidden.
    world.reader.client.meta.events.register("after-call.dynamodb.Query", count_items)
    end = start + duration + quiet_after
    while world.now <= end:
        while due and due[0] <= world.now:
            due.pop(0)
            world.write(world.rng.choice(skews), world.rng.uniform(0, max_lag))
        before = counter["items"]
        read = feed.read(world.reader, now_ms=int(world.now * 1000))
        run.reads += 1
        if world.now > end - idle_reads:
            run.idle_reads += 1
            run.idle_items += counter["items"] - before
        run.returned |= {i.launch_id for i in read.items}
        world.now += 1.0
    run.queries = counter["Query"]
    return run
