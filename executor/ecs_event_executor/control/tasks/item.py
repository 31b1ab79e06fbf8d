"""The task item as the services read it: the typed view, ECS snapshots, outcomes, and the history codec.

History is for operators (``ecs-event-executor show``, the task's log), not for the protocol, and every byte of
the item is billed on every write, so it is bounded by a rule one UpdateItem enforces: it is a map with one entry
per (attempt, state), written with ``if_not_exists`` so a repeated state (PENDING or RUNNING events with newer
versions) adds nothing; the terminal entry is keyed by its state alone (a terminal state is final); and a relaunch
to attempt n + 1 removes attempt n - 1's entries. So history holds the last two attempts (the one that failed and
its relaunch) and the outcome: at most ``HISTORY_LIMIT`` entries, whatever ``max_attempts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.shared.dynamodb_deserializer import TypeDeserializer

from ecs_event_executor.control.messages import TaskKey
from ecs_event_executor.control.tasks.lifecycle import ACTIVE_STATES, TERMINAL_STATES, TaskState
from ecs_event_executor.control.tasks.schema import Attr

# Attempts whose entries history keeps: the last two (the one that failed and its relaunch).
HISTORY_ATTEMPTS_KEPT = 2
HISTORY_LIMIT = HISTORY_ATTEMPTS_KEPT * len(ACTIVE_STATES) + 1
# History entries are stored with one-letter keys and read back with these names. A reason stored in an entry is
# cut to HISTORY_STORED_REASON_CHARS (what failed, not the whole message: the item must stay under 1 KB); the full
# one is in ``reason`` until the next one replaces it. The terminal entry stores none (a terminal state is final,
# so its reason is the item's) and is read back with it, cut to HISTORY_REASON_CHARS. State and attempt are in the
# entry's map key.
HISTORY_KEYS: Mapping[str, str] = {
    "t": "at",
    "s": "state",
    "e": "ecs",
    "v": "version",
    "a": "attempt",
    "r": "reason",
    "k": "task",
}
HISTORY_REASON_CHARS = 120
HISTORY_STORED_REASON_CHARS = 40
_STATE_CODES: Mapping[TaskState, str] = {
    TaskState.LAUNCHING: "L",
    TaskState.PENDING: "P",
    TaskState.RUNNING: "R",
    TaskState.SUCCEEDED: "S",
    TaskState.FAILED: "F",
    TaskState.CANCELLED: "C",
    TaskState.EXPIRED: "E",
}
_CODE_STATES = {code: state for state, code in _STATE_CODES.items()}
_ORDER = list(_STATE_CODES)


def history_key(state: TaskState, attempt: int) -> str:
    """Return the map key of a history entry: the attempt and the state's letter, the letter alone if terminal."""
    code = _STATE_CODES[state]
    return code if state.terminal else f"{attempt}{code}"


def superseded_history_keys(next_attempt: int) -> list[str]:
    """Return the keys a relaunch to ``next_attempt`` removes: those of the attempt before the failing one."""
    dropped = next_attempt - HISTORY_ATTEMPTS_KEPT
    if dropped < 1:
        return []
    return [history_key(state, dropped) for state in ACTIVE_STATES]


def history_entry(
    at: int,
    *,
    ecs: str | None = None,
    version: int | None = None,
    reason: str | None = None,
    task_arn: str | None = None,
) -> dict[str, Any]:
    """Return one compact history entry as stored (the task id only: the full ARN is in ``task_arn``)."""
    entry = {
        "t": at,
        "e": ecs,
        "v": version,
        "r": reason[:HISTORY_STORED_REASON_CHARS] if reason else None,
        "k": task_arn.rsplit("/", 1)[-1] if task_arn else None,
    }
    return {k: v for k, v in entry.items() if v is not None}


def _readable(entry: Mapping[str, Any]) -> dict[str, Any]:
    known = {HISTORY_KEYS[k]: entry[k] for k in HISTORY_KEYS if k in entry}
    return {**known, **{k: v for k, v in entry.items() if k not in HISTORY_KEYS}}


def expand_history(stored: Any, state: str, reason: str | None, attempt: int) -> tuple[dict[str, Any], ...]:
    """Return history readable and in order (attempt, then state): long names, state and attempt in each entry.

    Accepts the list items written before history became a map carry (entries in order, state and attempt inside).
    """
    if isinstance(stored, list):
        expanded = [_readable(entry) for entry in stored]
    else:
        ranked = []
        for key, entry in dict(stored or {}).items():
            entry_state = _CODE_STATES[key[-1]]
            entry_attempt = int(key[:-1]) if key[:-1] else attempt
            ranked.append(((entry_attempt, _ORDER.index(entry_state)), entry_state, entry_attempt, entry))
        expanded = [
            _readable({**entry, "s": entry_state.value, "a": entry_attempt})
            for _, entry_state, entry_attempt, entry in sorted(ranked, key=lambda r: r[0])
        ]
    last = expanded[-1] if expanded else None
    if last is not None and reason and last.get("state") == state and state in TERMINAL_STATES:
        last.setdefault("reason", reason[:HISTORY_REASON_CHARS])
    return tuple(expanded)


_DESER = TypeDeserializer()  # Powertools' (boto3's, without importing boto3 and s3transfer into the Lambdas)


def _attribute(value: Any) -> dict[str, Any]:
    """Return one Python value as a DynamoDB attribute value, by boto3's TypeSerializer rules (floats refused)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): _attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_attribute(v) for v in value]}
    if isinstance(value, set | frozenset) and value:
        if all(isinstance(v, str) for v in value):
            return {"SS": list(value)}
        if all(isinstance(v, int | Decimal) and not isinstance(v, bool) for v in value):
            return {"NS": [str(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB: {value!r}")


def _to_python(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    return value


def deserialize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Return a low-level DynamoDB item (``{"pk": {"S": ...}}``) as plain Python values (ints, not Decimals)."""
    return {k: _to_python(_DESER.deserialize(v)) for k, v in raw.items()}


def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return plain Python values as a low-level DynamoDB item."""
    return {k: _attribute(v) for k, v in values.items()}


@dataclass(frozen=True)
class TaskItem:
    """A typed view of one task item (from the table or the change-feed index)."""

    launch_id: str
    state: TaskState
    rev: int
    changed_at: int
    owner: str | None = None
    attempt: int = 1
    max_attempts: int = 1
    reason: str | None = None
    task_arn: str | None = None
    cluster_arn: str | None = None
    ecs_version: int | None = None
    ecs_last_status: str | None = None
    stop_code: str | None = None
    exit_code: int | None = None
    key: TaskKey | None = None
    team: str | None = None
    queued_at: int | None = None
    launched_at: int | None = None
    running_at: int | None = None
    finished_at: int | None = None
    lease_until: int | None = None
    cancel_requested: bool = False
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    checked_at: int | None = None
    missing_since: int | None = None
    retry_at: int | None = None

    @property
    def last_step_at(self) -> int:
        """Epoch ms of the latest step, stamped in the feed or not (``changed_at`` moves only for outcomes)."""
        times = (self.changed_at, self.queued_at, self.launched_at, self.running_at, self.finished_at)
        return max(t or 0 for t in times)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> TaskItem:
        """Build from a low-level DynamoDB item (``{"pk": {"S": ...}, ...}``)."""
        v = deserialize(raw)
        key = None
        if all(a in v for a in (Attr.DAG_ID, Attr.TASK_ID, Attr.RUN_ID, Attr.TRY_NUMBER)):
            key = TaskKey(
                dag_id=v[Attr.DAG_ID],
                task_id=v[Attr.TASK_ID],
                run_id=v[Attr.RUN_ID],
                map_index=v.get(Attr.MAP_INDEX, -1),
                try_number=v[Attr.TRY_NUMBER],
            )
        return cls(
            launch_id=v[Attr.PK],
            state=TaskState(v[Attr.STATE]),
            rev=v.get(Attr.REV, 0),
            changed_at=v.get(Attr.CHANGED_AT, 0),
            owner=v.get(Attr.OWNER),
            attempt=v.get(Attr.ATTEMPT, 1),
            max_attempts=v.get(Attr.MAX_ATTEMPTS, 1),
            reason=v.get(Attr.REASON),
            task_arn=v.get(Attr.TASK_ARN),
            cluster_arn=v.get(Attr.CLUSTER_ARN),
            ecs_version=v.get(Attr.ECS_VERSION),
            ecs_last_status=v.get(Attr.ECS_LAST_STATUS),
            stop_code=v.get(Attr.STOP_CODE),
            exit_code=v.get(Attr.EXIT_CODE),
            key=key,
            team=v.get(Attr.TEAM),
            queued_at=v.get(Attr.QUEUED_AT),
            launched_at=v.get(Attr.LAUNCHED_AT),
            running_at=v.get(Attr.RUNNING_AT),
            finished_at=v.get(Attr.FINISHED_AT),
            lease_until=v.get(Attr.LEASE_UNTIL),
            cancel_requested=bool(v.get(Attr.CANCEL_REQUESTED, False)),
            history=expand_history(
                v.get(Attr.HISTORY), v[Attr.STATE], v.get(Attr.REASON), v.get(Attr.ATTEMPT, 1)
            ),
            checked_at=v.get(Attr.CHECKED_AT),
            missing_since=v.get(Attr.MISSING_SINCE),
            retry_at=v.get(Attr.RETRY_AT),
        )


class ClaimOutcome(StrEnum):
    """What the launcher may do after trying to claim a launch attempt."""

    CLAIMED = "claimed"  # call RunTask (with this attempt's client token)
    BUSY = "busy"  # another launcher holds the lease right now: try again later
    DONE = (
        "done"  # an ECS task exists for this attempt, or the launch finished or was cancelled: nothing to do
    )


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    item: TaskItem | None


class EventOutcome(StrEnum):
    """What happened to an ECS event applied to the table."""

    APPLIED = "applied"
    STALE = "stale"  # an older or duplicate version, an earlier attempt's task, or the task already finished
    UNKNOWN = "unknown"  # no item for this launch id


@dataclass(frozen=True)
class EcsSnapshot:
    """The part of an ECS event the table stores, with the state the mapping chose."""

    state: TaskState
    task_arn: str
    version: int | None
    last_status: str
    cluster_arn: str | None = None
    reason: str | None = None
    stop_code: str | None = None
    exit_code: int | None = None
