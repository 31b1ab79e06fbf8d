"""The lifecycle of a launch: its states and the one table of which state may follow which.

Every conditional write of the tasks table derives the states it accepts from ``TRANSITIONS`` (``sources_of``).
A write that leaves the state alone (an owner, a task ARN learnt late, the reconciler's check time) is not a
transition. ``tests/control/test_lifecycle.py`` drives every write from every state, so the table is what the
system does. No AWS imports: this is vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class TaskState(StrEnum):
    """Where a launch is. The first three are active, the last four terminal."""

    LAUNCHING = "LAUNCHING"  # claimed by the launcher; no ECS task confirmed yet for this attempt
    PENDING = "PENDING"  # an ECS task exists and is provisioning, pending or activating
    RUNNING = "RUNNING"  # the ECS task runs (also while it is being stopped, until an exit code is known)
    SUCCEEDED = "SUCCEEDED"  # the Airflow container exited 0
    FAILED = "FAILED"  # exit code != 0, stopped, could not be launched: ``reason`` says which
    CANCELLED = "CANCELLED"  # revoked or terminated before it finished
    # Not started: it could no longer start before its workload's token expires. Not a failed try: the executor
    # hands it back to Airflow, whose stuck-in-queued path revokes and requeues it.
    EXPIRED = "EXPIRED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED})
ACTIVE_STATES = (TaskState.LAUNCHING, TaskState.PENDING, TaskState.RUNNING)
# How an attempt with an ECS task can end: EXPIRED is only for a launch that never started one.
_TASK_ENDINGS = TERMINAL_STATES - {TaskState.EXPIRED}

# Which states a write may put an item in, by the state it holds. A state may follow itself: the launcher claims
# and releases its lease in LAUNCHING, and ECS events with a newer ``detail.version`` refresh PENDING and RUNNING.
# A relaunch (next attempt, after an infrastructure failure) is the one way back to LAUNCHING. PENDING never
# follows RUNNING: ECS events may arrive out of order, and a late PENDING must not hide a running task. A terminal
# state is final.
TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.LAUNCHING: frozenset({*ACTIVE_STATES, *TERMINAL_STATES}),
    TaskState.PENDING: frozenset({*ACTIVE_STATES, *_TASK_ENDINGS}),
    TaskState.RUNNING: frozenset({TaskState.LAUNCHING, TaskState.RUNNING, *_TASK_ENDINGS}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
    TaskState.EXPIRED: frozenset(),
}

# The states an item may be created in: LAUNCHING by the launcher, CANCELLED when the executor's cancel arrives
# before the launch message (the launch then finds the item and does nothing), or FAILED when the launcher refuses
# a launch message (a command that is not its task's Airflow workload): nothing ran, the reason is on the item.
INITIAL_STATES = frozenset({TaskState.LAUNCHING, TaskState.CANCELLED, TaskState.FAILED})


def sources_of(target: TaskState, *, only: Iterable[TaskState] | None = None) -> frozenset[TaskState]:
    """Return the states an item may hold for a write to move it to ``target``, narrowed to ``only`` if given.

    Raises ``ValueError`` when ``only`` names a state the transition table does not allow to move to ``target``:
    a write cannot be more permissive than the table.
    """
    allowed = frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
    if only is None:
        return allowed
    narrowed = frozenset(only)
    if not narrowed <= allowed:
        wrong = ", ".join(sorted(narrowed - allowed))
        raise ValueError(f"the transition table does not allow {wrong} -> {target}")
    return narrowed
