"""The control plane's health facts: what the launcher and the status path note in the heartbeat item, and what
the executor's ``check_health`` concludes from them.

The reconciler writes ``heartbeat_at`` every pass. The launcher notes that RunTask started a task
(``run_task_ok_at``) or that ECS refused it for a reason no task can fix (``run_task_refused_at`` and its reason:
access denied, no such cluster); the status function notes the newest ECS event it applied (``event_seen_at``).
Each process notes a fact at most once per NOTE_EVERY_SECONDS (a refusal always), so this costs a few writes a
minute for the whole control plane, not one per task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

RUN_TASK_OK_AT = "run_task_ok_at"
RUN_TASK_REFUSED_AT = "run_task_refused_at"
RUN_TASK_REFUSED_REASON = "run_task_refused_reason"
EVENT_SEEN_AT = "event_seen_at"
RECONCILED_FINAL_AT = "reconciled_final_at"

# A fact noted this recently by this process is not written again.
NOTE_EVERY_SECONDS = 60.0
# The ECS rule delivers only the events of a task on its way down (STOPPING, most STOPPED, the Spot warning): a task
# can run for hours with no event, so a quiet status function says nothing. What does: the reconciler finishing a
# task whose stop event never came (it looks at tasks unchanged for its stale-after time, 10 minutes by default),
# with no event at all reaching the status function for this long before.
EVENTS_LATE_AFTER_SECONDS = 900.0
# RunTask errors that say the path to ECS is broken for every task, not that one task's parameters are wrong.
PATH_ERROR_CODES = frozenset(
    {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "ClusterNotFoundException"}
)


class HeartbeatWriter(Protocol):
    def note_heartbeat(self, **facts: int | str) -> None: ...


class HealthNotes:
    """Note health facts in the heartbeat item, throttled per process; a failed note is logged, never raised."""

    def __init__(self, clock: Callable[[], float] = time.time, *, reconciler: bool = False) -> None:
        self._clock = clock
        # The reconciler applies ECS's answers, not events: it notes the finals it had to apply instead.
        self._reconciler = reconciler
        self._noted: dict[str, float] = {}
        self._lock = threading.Lock()  # the launcher applies a batch on threads

    def run_task_ok(self, table: HeartbeatWriter) -> None:
        self._note(table, RUN_TASK_OK_AT, {})

    def run_task_refused(self, table: HeartbeatWriter, code: str, reason: str) -> None:
        if code in PATH_ERROR_CODES:
            self._note(table, RUN_TASK_REFUSED_AT, {RUN_TASK_REFUSED_REASON: reason[:500]}, always=True)

    def event_seen(self, table: HeartbeatWriter) -> None:
        if not self._reconciler:
            self._note(table, EVENT_SEEN_AT, {})

    def final_applied(self, table: HeartbeatWriter) -> None:
        """Note a final state written (by the reconciler: its task's stop event never reached the status function)."""
        if self._reconciler:
            self._note(table, RECONCILED_FINAL_AT, {})

    def _note(
        self, table: HeartbeatWriter, fact: str, extra: dict[str, Any], *, always: bool = False
    ) -> None:
        now = self._clock()
        with self._lock:
            if not always and now - self._noted.get(fact, float("-inf")) < NOTE_EVERY_SECONDS:
                return
            self._noted[fact] = now
        try:
            table.note_heartbeat(**{fact: int(now * 1000)}, **extra)
        except Exception as exc:  # health bookkeeping must never fail a launch or an event
            log.warning("could not note %s in the heartbeat: %s: %s", fact, type(exc).__name__, exc)


def path_problems(heartbeat: Mapping[str, Any], now_ms: int) -> list[str]:
    """Return what the heartbeat's facts say is broken on the path to ECS and back (empty: nothing known wrong)."""
    problems = []
    ok_at = int(heartbeat.get(RUN_TASK_OK_AT, 0))
    refused_at = int(heartbeat.get(RUN_TASK_REFUSED_AT, 0))
    if refused_at > ok_at:
        problems.append(
            "ECS refused the launcher's RunTask since its last successful launch "
            f"({heartbeat.get(RUN_TASK_REFUSED_REASON, 'no reason recorded')}): no task can start until the "
            "launcher's role, the cluster or the task definition is fixed"
        )
    seen_at = int(heartbeat.get(EVENT_SEEN_AT, 0))
    final_at = int(heartbeat.get(RECONCILED_FINAL_AT, 0))
    if final_at and final_at - seen_at > EVENTS_LATE_AFTER_SECONDS * 1000:
        problems.append(
            "the reconciler finished a task whose ECS events never reached the status function, and no ECS event "
            f"reached it in the {(final_at - seen_at) / 1000:.0f} s before: check the ECS event rule, its target "
            "dead-letter queue and the status function's failed-events queue (tasks finish only through the "
            "reconciler, minutes late)"
        )
    return problems
