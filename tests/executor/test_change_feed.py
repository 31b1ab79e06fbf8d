"""The change feed's window follows the writers' stamps: no change missed whatever the reader's clock says."""

from __future__ import annotations

import random
import time

import pytest
from ecs_event_executor.change_feed import ChangeFeed
from ecs_event_executor.config import MIN_RECONCILE_INTERVAL_SECONDS, ExecutorSettingsError, load_settings
from ecs_event_executor.control.messages import CancelRequest
from ecs_event_executor.control.tasks.table import TaskTable

from tests.support.aws import create_table
from tests.support.feed_sim import OWNER, ReaderClockFeed, SkewedWriters, run_feed

pytestmark = pytest.mark.compat

OVERLAP_MS = 15_000


@pytest.mark.parametrize("skew", [-30.0, 30.0])
def test_writers_half_a_minute_off_the_readers_clock_miss_nothing(aws: None, skew: float) -> None:
    world = SkewedWriters(create_table(), start=time.time(), rng=random.Random(7))
    feed = ChangeFeed(OWNER, start_ms=int(world.now * 1000), overlap_ms=OVERLAP_MS)
    run = run_feed(feed, world, skews=[skew], changes=40, duration=40, quiet_after=30)
    assert run.missed == 0
    # Quiet again: the window moved past the last change, so an idle read is one Query returning nothing.
    assert run.idle_items == 0 and run.queries == run.reads


def test_the_readers_clock_window_missed_changes_from_writers_behind_it(aws: None) -> None:
    """The scenario bites: the window of commit b84b779 (reader's clock) misses changes stamped 30 s behind."""
    world = SkewedWriters(create_table(), start=time.time(), rng=random.Random(7))
    feed = ReaderClockFeed(OWNER, start_ms=int(world.now * 1000), overlap_ms=OVERLAP_MS)
    run = run_feed(feed, world, skews=[-30.0], changes=40, duration=40, quiet_after=30)
    assert run.missed > 0


def test_a_new_feed_does_not_read_an_owners_old_history(aws: None) -> None:
    table_name = create_table()
    now = time.time()
    old = TaskTable(table_name, clock=lambda: now - 86_400)
    for i in range(30):
        old.finish_cancelled(CancelRequest(launch_id=f"old{i:08d}-1-x", owner=OWNER, reason="yesterday"))
    recent = TaskTable(table_name, clock=lambda: now - 5)
    recent.finish_cancelled(CancelRequest(launch_id="recent0000-1-x", owner=OWNER, reason="just now"))
    feed = ChangeFeed(OWNER, start_ms=int(now * 1000), overlap_ms=OVERLAP_MS)
    read = feed.read(TaskTable(table_name), now_ms=int(now * 1000))
    assert [i.launch_id for i in read.items] == ["recent0000-1-x"] and read.pages == 1


class _Conf:
    def __init__(self, **values: str) -> None:
        self.values = {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q", "table_name": "t", **values}

    def get(self, section: str, key: str, fallback: str | None = None) -> str | None:
        return self.values.get(key, fallback) if section == "ecs_event_executor" else fallback


def test_the_safety_net_cannot_be_switched_off() -> None:
    assert load_settings(_Conf(reconcile_interval_seconds="0")).reconcile_interval_seconds == 300
    assert load_settings(_Conf(reconcile_interval_seconds="60")).reconcile_interval_seconds == 60
    with pytest.raises(ExecutorSettingsError, match="at least 30"):
        load_settings(_Conf(reconcile_interval_seconds=str(MIN_RECONCILE_INTERVAL_SECONDS - 1)))
