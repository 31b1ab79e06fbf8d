"""Read one owner's changed task items since the last read: one Query when nothing changed.

Where a read starts comes from what the writers stamped, never from the reader's clock: the feed learns how far
the writers' clocks (the Lambdas') are ahead of the reader's from the stamps it reads (the largest
``changed_at`` minus the reader's time when it read it), and starts each read ``overlap`` before the writers'
time at the start of the previous read. The reader's clock only measures time elapsed between reads, which is
the same on every clock. So a scheduler whose clock is a minute ahead or behind the Lambdas' misses nothing, and
in a quiet period the window moves on: after ``overlap`` a read returns nothing, whatever came before.

``overlap`` covers the index's lag (and a read's own duration) plus the differences between writers' clocks (all
AWS Lambdas: milliseconds); a change is re-read (and dropped by (launch id, rev)) for ``overlap`` after it
happened, then never again.

A new feed (nothing read yet) reads newest first, back to ``overlap`` plus the time since the executor started
before the newest stamp: every write for a task this executor queued happened after it started, so an owner's
older history (a fixed ``owner`` across restarts) is not read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.table import TaskTable

# Items per page of a new feed's newest-first read: one small Query when the owner is new or quiet.
FIRST_READ_PAGE = 100


@dataclass
class FeedRead:
    items: list[TaskItem]
    pages: int


class ChangeFeed:
    """A cursor over ``TaskTable.changes_since`` for one owner."""

    def __init__(self, owner: str, *, start_ms: int, overlap_ms: int) -> None:
        self.owner = owner
        self.overlap_ms = overlap_ms
        self._start_ms = start_ms  # the reader's time when the executor started: only differences are used
        # The writers' clock minus the reader's, as far as the stamps read show; None until one is read.
        self.offset_ms: int | None = None
        self._since_ms = 0  # where the next read starts, in the writers' clock
        self._first = True
        self._seen: dict[str, tuple[int, int]] = {}  # launch id -> (rev, changed_at) returned already

    @property
    def since_ms(self) -> int:
        return self._since_ms

    def read(self, table: TaskTable, *, now_ms: int) -> FeedRead:
        """Return the items with a version not returned before (oldest change first).

        ``now_ms`` is the reader's clock at the start of the read. A write not visible yet when the read starts
        becomes visible later, stamped by a writer's clock at most ``overlap`` before the writers' time at this
        read's start (index lag plus differences between writers), so the next read starts there.

        All pages are read before anything is recorded, so an error halfway leaves the cursor where it was and
        the next read sees the same changes again.
        """
        if self._first:
            pages, read = self._newest_first(table, now_ms)
        else:
            pages, read = 0, []
            for page in table.changes_since(self.owner, self._since_ms):
                pages += 1
                read.extend(page)
        fresh: dict[str, TaskItem] = {}
        for item in read:
            seen = self._seen.get(item.launch_id)
            if seen is not None and seen[0] >= item.rev:
                continue
            known = fresh.get(item.launch_id)
            if known is None or known.rev < item.rev:
                fresh[item.launch_id] = item
        items = sorted(fresh.values(), key=lambda i: (i.changed_at, i.rev))
        self._learn(read, now_ms)
        for item in items:
            self._seen[item.launch_id] = (item.rev, item.changed_at)
        self._first = False
        if self.offset_ms is not None:
            self._since_ms = max(self._since_ms, now_ms + self.offset_ms - self.overlap_ms)
        self._prune()
        return FeedRead(items=items, pages=pages)

    def _newest_first(self, table: TaskTable, now_ms: int) -> tuple[int, list[TaskItem]]:
        """Read back from the newest stamp to ``overlap`` plus the executor's age before it."""
        pages = 0
        read: list[TaskItem] = []
        floor: int | None = None
        for page in table.changes_since(self.owner, 0, newest_first=True, page_size=FIRST_READ_PAGE):
            pages += 1
            for item in page:
                if floor is None:
                    floor = item.changed_at - self.overlap_ms - max(0, now_ms - self._start_ms)
                if item.changed_at < floor:
                    return pages, read
                read.append(item)
        return pages, read

    def _learn(self, items: Iterable[TaskItem], now_ms: int) -> None:
        # A stamp was written before the read returned it, by a clock at most ``offset`` ahead of the reader's.
        for item in items:
            offset = item.changed_at - now_ms
            if self.offset_ms is None or offset > self.offset_ms:
                self.offset_ms = offset

    def _prune(self) -> None:
        # An entry older than the read window cannot come back except with a higher rev: it is not needed.
        floor = self._since_ms
        for launch_id in [k for k, (_rev, changed) in self._seen.items() if changed < floor]:
            del self._seen[launch_id]
