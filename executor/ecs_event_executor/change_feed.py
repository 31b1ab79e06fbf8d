"""Read one owner's changed task items since the last read: one Query when nothing changed.

The change index is eventually consistent and the writers' clocks differ, so each read starts ``overlap`` before
the later of the newest change seen and the start of the previous read, and drops what it already returned, by
(launch id, rev). A change is therefore re-read (and dropped) for ``overlap`` after it happened, then never again:
a quiet feed costs one Query that returns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.table import TaskTable


@dataclass
class FeedRead:
    items: list[TaskItem]
    pages: int


class ChangeFeed:
    """A cursor over ``TaskTable.changes_since`` for one owner."""

    def __init__(self, owner: str, *, start_ms: int, overlap_ms: int) -> None:
        self.owner = owner
        self.overlap_ms = overlap_ms
        # max(newest changed_at read, start of the last complete read); reads start ``overlap_ms`` before it.
        self.watermark_ms = start_ms
        self._seen: dict[str, tuple[int, int]] = {}  # launch id -> (rev, changed_at) returned already

    @property
    def since_ms(self) -> int:
        return max(0, self.watermark_ms - self.overlap_ms)

    def read(self, table: TaskTable, *, now_ms: int) -> FeedRead:
        """Return the items with a version not returned before (oldest change first).

        ``now_ms`` is the reader's clock at the start of the read. A write that is not visible yet when the read
        starts becomes visible later, stamped at most ``overlap`` before that moment (index lag plus clock skew),
        so the next read may start ``overlap`` before it.

        All pages are read before anything is recorded, so an error halfway leaves the cursor where it was and
        the next read sees the same changes again.
        """
        fresh: dict[str, TaskItem] = {}
        pages = 0
        for page in table.changes_since(self.owner, self.since_ms):
            pages += 1
            for item in page:
                seen = self._seen.get(item.launch_id)
                if seen is not None and seen[0] >= item.rev:
                    continue
                known = fresh.get(item.launch_id)
                if known is None or known.rev < item.rev:
                    fresh[item.launch_id] = item
        items = sorted(fresh.values(), key=lambda i: (i.changed_at, i.rev))
        for item in items:
            self._seen[item.launch_id] = (item.rev, item.changed_at)
            self.watermark_ms = max(self.watermark_ms, item.changed_at)
        self.watermark_ms = max(self.watermark_ms, now_ms)
        self._prune()
        return FeedRead(items=items, pages=pages)

    def _prune(self) -> None:
        # An entry older than the read window cannot come back except with a higher rev: it is not needed.
        floor = self.since_ms
        for launch_id in [k for k, (_rev, changed) in self._seen.items() if changed < floor]:
            del self._seen[launch_id]
