"""The task item in DynamoDB: the only module that knows its keys, attributes, states and writes.

One item per launch (one queueing of one Airflow task instance try). The launcher creates it, the status handler
moves it along ECS's lifecycle, the executor reads it. Every write is conditional:

- a state never moves backwards within an attempt, and a terminal state (SUCCEEDED, FAILED, CANCELLED) is final;
- ECS events are applied in ``detail.version`` order: an older or equal version is a late duplicate and is dropped;
- an event for an earlier attempt (an ECS task that was replaced after an infrastructure failure) is dropped.

Every write bumps ``rev``. A write the executor must act on (a terminal state, a relaunch, a retry reason, a new
owner) also stamps ``changed_at`` (epoch ms), which the sparse ``by_owner_changed`` index sorts by, so an executor
reads only what changed for its owner since a point: the cost follows the number of outcomes, not the number of
running tasks. Steps the executor has no use for (created, launched, running: Airflow learns a task runs from the
worker itself) are not stamped, so they never write the index: an item enters it once, when it finishes.

Write cost (DynamoDB bills each write by the item's size in 1 KB units, plus every index entry it puts, updates or
moves): the launch request, a few KB with an Airflow 3 workload's token, lives in a side item written once
(``<launch id>#request``, zlib-compressed, in no index) and read only for a relaunch; history entries are compact;
so the task item stays under 1 KB. The stale index is sorted by ``checked_at``, which only creation and the
reconciler's ``touch`` set, and projects keys only: a state change does not write it (only creation, touch and
the terminal write that removes ``active``).
"""

from __future__ import annotations

import re
import time
import zlib
from binascii import crc32
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ecs_event_executor.control.messages import CancelRequest, LaunchRequest, TaskKey

# The placeholders an expression uses: #name and :value.
_PLACEHOLDER = re.compile(r"[#:]\w+")


class TaskState(StrEnum):
    """Where a launch is. The first three are active, the last three terminal."""

    LAUNCHING = "LAUNCHING"  # claimed by the launcher; no ECS task confirmed yet for this attempt
    PENDING = "PENDING"  # an ECS task exists and is provisioning, pending or activating
    RUNNING = "RUNNING"  # the ECS task runs (also while it is being stopped, until an exit code is known)
    SUCCEEDED = "SUCCEEDED"  # the Airflow container exited 0
    FAILED = "FAILED"  # exit code != 0, stopped, could not be launched: ``reason`` says which
    CANCELLED = "CANCELLED"  # revoked or terminated before it finished

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
ACTIVE_STATES = (TaskState.LAUNCHING, TaskState.PENDING, TaskState.RUNNING)
# "The item is active", as a condition over ``#s`` (the state), and the values it names.
IS_ACTIVE = "#s IN (" + ", ".join(f":active_{i}" for i in range(len(ACTIVE_STATES))) + ")"
ACTIVE_VALUES: Mapping[str, str] = {f":active_{i}": s.value for i, s in enumerate(ACTIVE_STATES)}

# Allowed transitions. A relaunch (next attempt) is the one way back to LAUNCHING, and it increments ``attempt``.
TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.LAUNCHING: frozenset({TaskState.PENDING, TaskState.RUNNING, *TERMINAL_STATES}),
    TaskState.PENDING: frozenset({TaskState.RUNNING, TaskState.LAUNCHING, *TERMINAL_STATES}),
    TaskState.RUNNING: frozenset({TaskState.LAUNCHING, *TERMINAL_STATES}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


class Attr:
    """Attribute names of the task item. Nothing outside this module spells them."""

    PK = "pk"  # the launch id
    OWNER = "owner"  # the executor instance (or team) whose change feed shows this item
    CHANGED_AT = "changed_at"  # epoch ms of the last write the executor acts on: the change feed's sort key
    REV = "rev"  # write counter: the executor de-duplicates overlapping reads with it
    STATE = "state"
    REASON = "reason"  # why the task failed, was cancelled, or is retrying; shown in the task's log
    ATTEMPT = "attempt"  # 1-based ECS task attempt for this launch
    MAX_ATTEMPTS = "max_attempts"
    LEASE_UNTIL = "lease_until"  # epoch ms until which one launcher holds the right to call RunTask
    TASK_ARN = "task_arn"
    CLUSTER_ARN = "cluster_arn"
    ECS_VERSION = "ecs_version"  # detail.version of the last applied ECS event
    ECS_LAST_STATUS = "ecs_last_status"
    STOP_CODE = "stop_code"
    EXIT_CODE = "exit_code"
    DAG_ID = "dag_id"
    TASK_ID = "task_id"
    RUN_ID = "run_id"
    MAP_INDEX = "map_index"
    TRY_NUMBER = "try_number"
    TEAM = "team"
    # On the side item only (``<launch id>#request``): the launch request JSON, zlib-compressed (Binary), kept so
    # a relaunch needs nothing from the queue.
    REQUEST = "request"
    QUEUED_AT = "queued_at"  # epoch ms: when the executor queued it
    LAUNCHED_AT = "launched_at"  # epoch ms: when RunTask returned the task
    RUNNING_AT = "running_at"  # epoch ms: the first RUNNING event
    FINISHED_AT = "finished_at"  # epoch ms: the terminal write
    CANCEL_REQUESTED = "cancel_requested"
    HISTORY = "history"  # short list of compact entries (HISTORY_KEYS): for operators
    EXPIRES_AT = "expires_at"  # epoch seconds: DynamoDB TTL, set on terminal writes (and on the side item)
    # Present only while the launch is active: the sparse stale index holds active items and nothing else.
    ACTIVE = "active"
    # Epoch ms of creation, of the reconciler's last check, of a relaunch, or of a launch recorded long after its
    # last check: the stale index's sort key. Other state changes leave it alone, so they never write that index.
    CHECKED_AT = "checked_at"
    # Epoch ms of the reconciler's first DescribeTasks answer MISSING for the task; a found task clears it.
    MISSING_SINCE = "missing_since"
    # Epoch ms when a launch that is backing off (throttling, capacity) comes back to the launcher.
    RETRY_AT = "retry_at"


# The change-feed index: partition by owner, sort by change time.
CHANGE_INDEX = "by_owner_changed"
# Attributes the executor needs from the change feed, projected into the index (not the bulky request).
CHANGE_INDEX_ATTRIBUTES: tuple[str, ...] = (
    Attr.STATE,
    Attr.REV,
    Attr.REASON,
    Attr.ATTEMPT,
    Attr.TASK_ARN,
    Attr.EXIT_CODE,
    Attr.STOP_CODE,
    Attr.ECS_LAST_STATUS,
    Attr.DAG_ID,
    Attr.TASK_ID,
    Attr.RUN_ID,
    Attr.MAP_INDEX,
    Attr.TRY_NUMBER,
    Attr.QUEUED_AT,
    Attr.LAUNCHED_AT,
    Attr.RUNNING_AT,
    Attr.FINISHED_AT,
)

# The stale index: only active items (sparse on ``active``), sorted by when the reconciler last checked them, so
# its cost follows the number of active items due for a check, not the table size. Keys only: the reconciler
# reads the items themselves (BatchGetItem), and no write but creation, touch, relaunch and the terminal one
# updates it. ``active`` is one of STALE_SHARDS values (from the launch id), so the index's writes and reads
# spread over that many partitions instead of one; readers query every shard.
STALE_INDEX = "by_active_checked"
STALE_SHARDS = 16
ACTIVE_SHARD_VALUES: tuple[str, ...] = tuple(str(i) for i in range(STALE_SHARDS))
# A launch recorded this long after its last check re-stamps ``checked_at``: DescribeTasks is eventually
# consistent right after RunTask, so the reconciler must not check it straight away.
LAUNCH_RECHECK_GRACE_MS = 60_000
# The control plane's heartbeat lives in the table under a key no launch id can take (launch ids have no '#').
HEARTBEAT_KEY = "control-plane#heartbeat"
# The launch request's side item: ``<launch id>#request`` (launch ids have no '#', so it cannot be a task item).
REQUEST_KEY_SUFFIX = "#request"
# How long a launch request is kept for relaunches. Only a launch whose ECS task never started is relaunched
# (minutes after queueing), and an Airflow 3 workload's token expires after task_queued_timeout anyway.
REQUEST_RETENTION_SECONDS = 30 * 24 * 3600

# Finished items are kept this long (DynamoDB TTL), for adoption, operators and late duplicates.
DEFAULT_FINISHED_TTL_SECONDS = 7 * 24 * 3600
# History is for people, not for the protocol; bound it so a chatty task cannot grow its item.
HISTORY_LIMIT = 30
# History entries are stored with one-letter keys (every byte of the item is billed on every write) and read back
# with these names. A reason in history is cut to HISTORY_REASON_CHARS; the full one is in ``reason``. The
# terminal entry stores none (a terminal state is final, so its reason is the item's) and is read back with it.
HISTORY_KEYS: Mapping[str, str] = {
    "t": "at",
    "s": "state",
    "e": "ecs",
    "v": "version",
    "a": "attempt",
    "r": "reason",
    "k": "task",
}
_HISTORY_SHORT = {long: short for short, long in HISTORY_KEYS.items()}
HISTORY_REASON_CHARS = 120


def request_key(launch_id: str) -> str:
    """Return the key of a launch's request side item."""
    return launch_id + REQUEST_KEY_SUFFIX


def active_shard(launch_id: str) -> str:
    """Return the stale-index shard (the ``active`` value) of a launch: stable, spread evenly."""
    return ACTIVE_SHARD_VALUES[crc32(launch_id.encode()) % STALE_SHARDS]


def is_task_key(pk: str) -> bool:
    """Return whether a table key is a task item's (not the heartbeat's or a launch request's side item)."""
    return "#" not in pk


def history_entry(
    at: int,
    state: TaskState,
    *,
    ecs: str | None = None,
    version: int | None = None,
    attempt: int | None = None,
    reason: str | None = None,
    task_arn: str | None = None,
) -> dict[str, Any]:
    """Return one compact history entry as stored (the task id only: the full ARN is in ``task_arn``)."""
    entry = {
        "t": at,
        "s": state.value,
        "e": ecs,
        "v": version,
        "a": attempt,
        "r": reason[:HISTORY_REASON_CHARS] if reason else None,
        "k": task_arn.rsplit("/", 1)[-1] if task_arn else None,
    }
    return {k: v for k, v in entry.items() if v is not None}


def _expand_history(
    entries: list[Mapping[str, Any]], state: str, reason: str | None
) -> tuple[dict[str, Any], ...]:
    expanded = [{HISTORY_KEYS.get(k, k): v for k, v in entry.items()} for entry in entries]
    last = expanded[-1] if expanded else None
    if last is not None and reason and last.get("state") == state and state in TERMINAL_STATES:
        last.setdefault("reason", reason[:HISTORY_REASON_CHARS])
    return tuple(expanded)


_SER = TypeSerializer()
_DESER = TypeDeserializer()


def _to_python(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    return value


def _deserialize(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _to_python(_DESER.deserialize(v)) for k, v in raw.items()}


def _serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _SER.serialize(v) for k, v in values.items()}


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
        v = _deserialize(raw)
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
            history=_expand_history(v.get(Attr.HISTORY, []), v[Attr.STATE], v.get(Attr.REASON)),
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


class TaskTable:
    """Conditional reads and writes of task items. Clients are injectable; the default is created lazily."""

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
            self._client = boto3.client("dynamodb")
        return self._client

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ----------------------------------------------------------------- reads

    def get(self, launch_id: str, *, consistent: bool = True) -> TaskItem | None:
        """Return one item, or None."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": launch_id}}, ConsistentRead=consistent
        )
        return TaskItem.from_raw(resp["Item"]) if "Item" in resp else None

    def get_many(self, launch_ids: Iterable[str]) -> dict[str, TaskItem]:
        """Return the items that exist among ``launch_ids`` (BatchGetItem, 100 keys a call)."""
        ids = list(dict.fromkeys(launch_ids))
        found: dict[str, TaskItem] = {}
        # DynamoDB reads at most 100 keys per BatchGetItem.
        for start in range(0, len(ids), 100):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{Attr.PK: {"S": i}} for i in ids[start : start + 100]],
                    "ConsistentRead": True,
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

    # ---------------------------------------------------------------- writes

    def _stamp(
        self, names: dict[str, str], values: dict[str, Any], now: int, *, feed: bool = True
    ) -> list[str]:
        """Return the SET clauses every write carries: a new rev, and with ``feed`` the change time that puts the
        item in its owner's change feed (an index write: only for what the executor acts on)."""
        names["#rev"] = Attr.REV
        values.update({":one": 1, ":zero": 0, ":now": now})
        if not feed:
            return ["#rev = if_not_exists(#rev, :zero) + :one"]
        names["#chg"] = Attr.CHANGED_AT
        return ["#rev = if_not_exists(#rev, :zero) + :one", "#chg = :now"]

    def _history(self, names: dict[str, str], values: dict[str, Any], entry: dict[str, Any]) -> str:
        names["#hist"] = Attr.HISTORY
        values[":hist"] = [entry]
        values[":empty"] = []
        return "#hist = list_append(if_not_exists(#hist, :empty), :hist)"

    def _update(
        self,
        launch_id: str,
        *,
        sets: list[str],
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        removes: Iterable[str] = (),
    ) -> tuple[bool, TaskItem | None]:
        """Run one conditional UpdateItem; return (written, the item after, or as it was when the condition failed)."""
        expression = "SET " + ", ".join(sets)
        removes = list(removes)
        if "#act" in names:
            removes.append("#act")
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        # DynamoDB refuses placeholders an expression does not use (an unstamped write has no change time).
        used = set(_PLACEHOLDER.findall(f"{expression} {condition}"))
        names = {k: v for k, v in names.items() if k in used}
        values = {k: v for k, v in values.items() if k in used}
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={Attr.PK: {"S": launch_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            return False, (TaskItem.from_raw(old) if old else self.get(launch_id))
        return True, TaskItem.from_raw(resp["Attributes"])

    def _terminal_sets(self, names: dict[str, str], values: dict[str, Any], now: int) -> list[str]:
        """Return the SET clauses of a terminal write; ``_update`` then also removes the item from the stale index."""
        names.update({"#fin": Attr.FINISHED_AT, "#exp": Attr.EXPIRES_AT, "#act": Attr.ACTIVE})
        values.update({":fin": now, ":exp": now // 1000 + self.finished_ttl_seconds})
        return ["#fin = :fin", "#exp = :exp"]

    def create_for_launch(self, request: LaunchRequest, *, lease_seconds: float) -> Claim:
        """Create the item for a new launch, holding the launch lease for attempt 1; or report what exists.

        The launch request's side item is written first, so whenever the task item exists its request does too
        (a launcher that dies in between leaves a request whose redelivered message writes it again).
        """
        self._put_request(request)
        now = self._now_ms()
        values: dict[str, Any] = {
            Attr.PK: request.launch_id,
            Attr.OWNER: request.owner,
            Attr.STATE: TaskState.LAUNCHING.value,
            Attr.REV: 1,
            Attr.ATTEMPT: 1,
            Attr.MAX_ATTEMPTS: request.max_attempts,
            Attr.LEASE_UNTIL: now + int(lease_seconds * 1000),
            Attr.DAG_ID: request.key.dag_id,
            Attr.TASK_ID: request.key.task_id,
            Attr.RUN_ID: request.key.run_id,
            Attr.MAP_INDEX: request.key.map_index,
            Attr.TRY_NUMBER: request.key.try_number,
            Attr.QUEUED_AT: int(request.queued_at.timestamp() * 1000),
            Attr.HISTORY: [history_entry(now, TaskState.LAUNCHING, attempt=1)],
            Attr.ACTIVE: active_shard(request.launch_id),
            Attr.CHECKED_AT: now,
        }
        if request.team:
            values[Attr.TEAM] = request.team
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_serialize(values),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": Attr.PK},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            # A redelivered or duplicated message: the item exists. Take the lease if its launcher went away.
            return self.claim_attempt(request.launch_id, 1, lease_seconds=lease_seconds)
        # The item is exactly what was written: no need to read it back.
        return Claim(ClaimOutcome.CLAIMED, TaskItem.from_raw(_serialize(values)))

    def _put_request(self, request: LaunchRequest) -> None:
        """Write the launch request's side item: compressed, in no index, expiring REQUEST_RETENTION_SECONDS after
        it was queued (DynamoDB TTL deletes cost nothing)."""
        queued_s = int(request.queued_at.timestamp())
        self.client.put_item(
            TableName=self.table_name,
            Item={
                Attr.PK: {"S": request_key(request.launch_id)},
                Attr.REQUEST: {"B": zlib.compress(request.to_json().encode(), 9)},
                Attr.EXPIRES_AT: {"N": str(queued_s + REQUEST_RETENTION_SECONDS)},
            },
        )

    def read_request(self, launch_id: str) -> LaunchRequest | None:
        """Return the launch request kept for ``launch_id`` (for a relaunch), or None if it is gone."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": request_key(launch_id)}}, ConsistentRead=True
        )
        raw = resp.get("Item", {}).get(Attr.REQUEST, {}).get("B")
        if raw is None:
            return None
        return LaunchRequest.model_validate_json(zlib.decompress(raw))

    def claim_attempt(self, launch_id: str, attempt: int, *, lease_seconds: float) -> Claim:
        """Take the launch lease for ``attempt`` if no ECS task is known for it and no live lease is held."""
        now = self._now_ms()
        names = {"#s": Attr.STATE, "#a": Attr.ATTEMPT, "#l": Attr.LEASE_UNTIL, "#arn": Attr.TASK_ARN}
        values: dict[str, Any] = {
            ":launching": TaskState.LAUNCHING.value,
            ":a": attempt,
            ":lease": now + int(lease_seconds * 1000),
        }
        sets = [*self._stamp(names, values, now, feed=False), "#l = :lease"]
        condition = (
            "#s = :launching AND #a = :a AND attribute_not_exists(#arn) "
            "AND (attribute_not_exists(#l) OR #l < :now)"
        )
        written, item = self._update(launch_id, sets=sets, condition=condition, names=names, values=values)
        if written:
            return Claim(ClaimOutcome.CLAIMED, item)
        if item is None:
            return Claim(ClaimOutcome.DONE, None)
        live_lease = (
            item.state is TaskState.LAUNCHING
            and item.attempt == attempt
            and item.task_arn is None
            and item.lease_until is not None
            and item.lease_until >= now
        )
        return Claim(ClaimOutcome.BUSY if live_lease else ClaimOutcome.DONE, item)

    def record_launched(
        self,
        launch_id: str,
        attempt: int,
        *,
        task_arn: str,
        cluster_arn: str | None,
        checked_at: int | None = None,
    ) -> tuple[bool, TaskItem | None]:
        """Record the ECS task RunTask returned. Returns (recorded, item); not recorded when the launch was
        cancelled meanwhile (the caller then stops the task) or an event already recorded it.

        ``checked_at`` is the item's as the caller read it (None: unknown). A launch recorded more than
        LAUNCH_RECHECK_GRACE_MS after it re-stamps it, so the reconciler does not ask ECS about a task
        DescribeTasks may not show yet; a prompt launch leaves it (and the stale index) alone.
        """
        now = self._now_ms()
        names = {
            "#s": Attr.STATE,
            "#a": Attr.ATTEMPT,
            "#arn": Attr.TASK_ARN,
            "#l": Attr.LEASE_UNTIL,
            "#at": Attr.LAUNCHED_AT,
        }
        values: dict[str, Any] = {":a": attempt, ":arn": task_arn, ":launching": TaskState.LAUNCHING.value}
        sets = [*self._stamp(names, values, now, feed=False), "#arn = :arn", "#at = if_not_exists(#at, :now)"]
        recheck = checked_at is None or now - checked_at > LAUNCH_RECHECK_GRACE_MS
        if recheck:
            names["#chk"] = Attr.CHECKED_AT
            sets.append("#chk = :now")
        if cluster_arn:
            names["#cl"] = Attr.CLUSTER_ARN
            values[":cl"] = cluster_arn
            sets.append("#cl = :cl")
        # Only a LAUNCHING item moves to PENDING: if an ECS event came first it already holds a later state.
        names["#st"] = Attr.STATE
        values[":pending"] = TaskState.PENDING.value
        sets.append("#st = :pending")
        sets.append(
            self._history(
                names,
                values,
                history_entry(now, TaskState.PENDING, attempt=attempt, task_arn=task_arn),
            )
        )
        written, item = self._update(
            launch_id,
            sets=sets,
            condition="#s = :launching AND #a = :a",
            names=names,
            values=values,
            removes=["#l"],
        )
        if written or item is None or item.state is TaskState.CANCELLED or item.attempt != attempt:
            return written, item
        # An ECS event for this attempt arrived before RunTask returned: it holds a later state; add the ARN only.
        names = {"#a": Attr.ATTEMPT, "#arn": Attr.TASK_ARN, "#at": Attr.LAUNCHED_AT}
        values = {":a": attempt, ":arn": task_arn}
        sets = [
            *self._stamp(names, values, now, feed=False),
            "#arn = if_not_exists(#arn, :arn)",
            "#at = if_not_exists(#at, :now)",
        ]
        if recheck:
            names["#chk"] = Attr.CHECKED_AT
            sets.append("#chk = :now")
        return self._update(launch_id, sets=sets, condition="#a = :a", names=names, values=values)

    def release_lease(
        self, launch_id: str, attempt: int, *, reason: str, retry_in_seconds: float | None = None
    ) -> None:
        """Give up the lease after a retryable failure, leaving the reason for operators and the executor, and
        when the launch comes back (``retry_in_seconds``: the queue's visibility timeout), so the reconciler
        tells a launch that is backing off from one whose message was lost."""
        now = self._now_ms()
        names = {"#s": Attr.STATE, "#a": Attr.ATTEMPT, "#l": Attr.LEASE_UNTIL, "#r": Attr.REASON}
        values: dict[str, Any] = {":a": attempt, ":launching": TaskState.LAUNCHING.value, ":r": reason[:2000]}
        sets = [*self._stamp(names, values, now), "#r = :r"]
        if retry_in_seconds is not None:
            names["#ra"] = Attr.RETRY_AT
            values[":ra"] = now + int(retry_in_seconds * 1000)
            sets.append("#ra = :ra")
        self._update(
            launch_id,
            sets=sets,
            condition="#s = :launching AND #a = :a",
            names=names,
            values=values,
            removes=["#l"],
        )

    def _fail(
        self,
        launch_id: str,
        attempt: int,
        *,
        reason: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> tuple[bool, TaskItem | None]:
        """End a launch FAILED with ``reason``, if ``condition`` (over ``names``/``values``) holds."""
        now = self._now_ms()
        names.update({"#s": Attr.STATE, "#a": Attr.ATTEMPT, "#r": Attr.REASON, "#l": Attr.LEASE_UNTIL})
        values.update({":a": attempt, ":failed": TaskState.FAILED.value, ":r": reason[:2000]})
        sets = [
            *self._stamp(names, values, now),
            "#s = :failed",
            "#r = :r",
            *self._terminal_sets(names, values, now),
            self._history(names, values, history_entry(now, TaskState.FAILED, attempt=attempt)),
        ]
        return self._update(
            launch_id, sets=sets, condition=condition, names=names, values=values, removes=["#l"]
        )

    def fail_launch(self, launch_id: str, attempt: int, *, reason: str) -> tuple[bool, TaskItem | None]:
        """End a launch FAILED before any ECS task ran for it (permanent RunTask error, deadline passed)."""
        return self._fail(
            launch_id,
            attempt,
            reason=reason,
            condition="#s = :launching AND #a = :a AND attribute_not_exists(#arn)",
            names={"#arn": Attr.TASK_ARN},
            values={":launching": TaskState.LAUNCHING.value},
        )

    def apply_ecs_event(
        self, launch_id: str, attempt: int, snap: EcsSnapshot
    ) -> tuple[EventOutcome, TaskItem | None]:
        """Apply one ECS event to the item, in ``detail.version`` order, for the attempt that started the task."""
        now = self._now_ms()
        names = {
            "#s": Attr.STATE,
            "#a": Attr.ATTEMPT,
            "#v": Attr.ECS_VERSION,
            "#ls": Attr.ECS_LAST_STATUS,
            "#arn": Attr.TASK_ARN,
        }
        values: dict[str, Any] = {
            ":a": attempt,
            ":ns": snap.state.value,
            ":ls": snap.last_status,
            ":arn": snap.task_arn,
            **ACTIVE_VALUES,
        }
        # Only an outcome goes to the executor's feed; PENDING and RUNNING are for operators and the reconciler.
        sets = [
            *self._stamp(names, values, now, feed=snap.state.terminal),
            "#s = :ns",
            "#ls = :ls",
            "#arn = :arn",
        ]
        # Versions order events; an event without one (partial) may only be the first we apply.
        if snap.version is not None:
            values[":v"] = snap.version
            sets.append("#v = :v")
            version_ok = "(attribute_not_exists(#v) OR #v < :v)"
        else:
            version_ok = "attribute_not_exists(#v)"
        for attr, placeholder, value in (
            (Attr.CLUSTER_ARN, ":cl", snap.cluster_arn),
            (Attr.REASON, ":r", snap.reason[:2000] if snap.reason else None),
            (Attr.STOP_CODE, ":sc", snap.stop_code),
            (Attr.EXIT_CODE, ":ec", snap.exit_code),
        ):
            if value is not None:
                names["#" + placeholder[1:]] = attr
                values[placeholder] = value
                sets.append(f"#{placeholder[1:]} = {placeholder}")
        if snap.state is TaskState.RUNNING:
            names["#ra"] = Attr.RUNNING_AT
            sets.append("#ra = if_not_exists(#ra, :now)")
        if snap.state.terminal:
            sets.extend(self._terminal_sets(names, values, now))
        sets.append(
            self._history(
                names,
                values,
                history_entry(
                    now,
                    snap.state,
                    ecs=snap.last_status,
                    version=snap.version,
                    attempt=attempt,
                    reason=None if snap.state.terminal else snap.reason,
                ),
            )
        )
        # The state sets in this attempt only move forward: LAUNCHING < PENDING < RUNNING < terminal.
        rank_ok = IS_ACTIVE
        if snap.state is TaskState.PENDING:
            values[":running"] = TaskState.RUNNING.value
            rank_ok += " AND #s <> :running"
        condition = f"#a = :a AND {rank_ok} AND {version_ok}"
        written, item = self._update(launch_id, sets=sets, condition=condition, names=names, values=values)
        if written:
            return EventOutcome.APPLIED, item
        return (EventOutcome.UNKNOWN if item is None else EventOutcome.STALE), item

    def schedule_relaunch(
        self, launch_id: str, attempt: int, snap: EcsSnapshot
    ) -> tuple[bool, TaskItem | None]:
        """Move to the next attempt after an infrastructure failure: LAUNCHING again, attempt + 1, task fields cleared.

        Conditional on the same attempt and an older ECS version, so a duplicate of the failing event cannot
        relaunch twice.
        """
        now = self._now_ms()
        names = {"#s": Attr.STATE, "#a": Attr.ATTEMPT, "#v": Attr.ECS_VERSION, "#r": Attr.REASON}
        values: dict[str, Any] = {
            ":a": attempt,
            ":next": attempt + 1,
            ":launching": TaskState.LAUNCHING.value,
            ":r": f"attempt {attempt} failed, relaunching: {snap.reason or ''}"[:2000],
            **ACTIVE_VALUES,
        }
        # A new attempt starts a new ECS task: the reconciler waits a full period before asking ECS about it.
        names["#chk"] = Attr.CHECKED_AT
        sets = [
            *self._stamp(names, values, now),
            "#s = :launching",
            "#a = :next",
            "#r = :r",
            "#chk = :now",
            self._history(
                names,
                values,
                history_entry(
                    now,
                    TaskState.LAUNCHING,
                    ecs=snap.last_status,
                    version=snap.version,
                    attempt=attempt + 1,
                    reason=snap.reason,
                ),
            ),
        ]
        if snap.version is not None:
            values[":v"] = snap.version
            version_ok = "(attribute_not_exists(#v) OR #v < :v)"
        else:
            version_ok = "attribute_not_exists(#v)"
        removes = ["#v"]
        for i, attr in enumerate(
            (
                Attr.TASK_ARN,
                Attr.CLUSTER_ARN,
                Attr.ECS_LAST_STATUS,
                Attr.STOP_CODE,
                Attr.EXIT_CODE,
                Attr.LEASE_UNTIL,
                Attr.LAUNCHED_AT,
                Attr.RUNNING_AT,
                Attr.MISSING_SINCE,
                Attr.RETRY_AT,
            )
        ):
            names[f"#rm{i}"] = attr
            removes.append(f"#rm{i}")
        condition = f"#a = :a AND {IS_ACTIVE} AND {version_ok}"
        return self._update(
            launch_id, sets=sets, condition=condition, names=names, values=values, removes=removes
        )

    def finish_cancelled(self, request: CancelRequest) -> tuple[bool, TaskItem | None]:
        """Cancel a launch that has no ECS task yet (creating a CANCELLED item if the launch has not arrived)."""
        now = self._now_ms()
        names = {
            "#s": Attr.STATE,
            "#arn": Attr.TASK_ARN,
            "#r": Attr.REASON,
            "#o": Attr.OWNER,
            "#l": Attr.LEASE_UNTIL,
        }
        values: dict[str, Any] = {
            ":cancelled": TaskState.CANCELLED.value,
            ":launching": TaskState.LAUNCHING.value,
            ":r": request.reason,
            ":o": request.owner,
        }
        sets = [
            *self._stamp(names, values, now),
            "#s = :cancelled",
            "#r = :r",
            "#o = if_not_exists(#o, :o)",
            *self._terminal_sets(names, values, now),
            self._history(names, values, history_entry(now, TaskState.CANCELLED)),
        ]
        # A missing item is created CANCELLED, so a launch message that arrives later finds it and does nothing.
        condition = "attribute_not_exists(#s) OR (#s = :launching AND attribute_not_exists(#arn))"
        return self._update(
            request.launch_id, sets=sets, condition=condition, names=names, values=values, removes=["#l"]
        )

    def mark_cancel_requested(self, launch_id: str, *, reason: str) -> tuple[bool, TaskItem | None]:
        """Note that a running launch is being stopped (the ECS STOPPED event ends it)."""
        now = self._now_ms()
        names = {"#s": Attr.STATE, "#c": Attr.CANCEL_REQUESTED, "#r": Attr.REASON}
        values: dict[str, Any] = {
            ":t": True,
            ":r": reason,
            **ACTIVE_VALUES,
        }
        sets = [*self._stamp(names, values, now, feed=False), "#c = :t", "#r = :r"]
        return self._update(
            launch_id,
            sets=sets,
            condition=IS_ACTIVE,
            names=names,
            values=values,
        )

    def set_owner(self, launch_id: str, owner: str) -> tuple[bool, TaskItem | None]:
        """Move an item to a new owner; the write also re-stamps it, so the new owner's change feed shows it."""
        now = self._now_ms()
        names = {"#o": Attr.OWNER}
        values: dict[str, Any] = {":o": owner}
        sets = [*self._stamp(names, values, now), "#o = :o"]
        return self._update(
            launch_id, sets=sets, condition="attribute_exists(#o)", names=names, values=values
        )

    # ------------------------------------------------------- reconciliation

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
        """Return up to ``limit`` active items, of every owner (operator tooling: the feed shows outcomes only)."""
        return self.stale_active(2**62, limit=limit)

    def fail_lost(
        self, launch_id: str, attempt: int, *, task_arn: str, reason: str
    ) -> tuple[bool, TaskItem | None]:
        """End a launch whose ECS task ECS no longer knows (its events were lost and it aged out)."""
        return self._fail(
            launch_id,
            attempt,
            reason=reason,
            condition=f"#a = :a AND #arn = :arn AND {IS_ACTIVE}",
            names={"#arn": Attr.TASK_ARN},
            values={":arn": task_arn, **ACTIVE_VALUES},
        )

    def mark_missing(self, launch_id: str, attempt: int, *, task_arn: str) -> tuple[bool, TaskItem | None]:
        """Note the first time DescribeTasks answered MISSING for the task (``missing_since``), if not noted yet.

        Not a change and not a check: ``checked_at`` stays, so the next pass asks ECS again.
        """
        names = {"#a": Attr.ATTEMPT, "#arn": Attr.TASK_ARN, "#s": Attr.STATE, "#m": Attr.MISSING_SINCE}
        values: dict[str, Any] = {":a": attempt, ":arn": task_arn, ":now": self._now_ms(), **ACTIVE_VALUES}
        return self._update(
            launch_id,
            sets=["#m = :now"],
            condition=f"#a = :a AND #arn = :arn AND {IS_ACTIVE} AND attribute_not_exists(#m)",
            names=names,
            values=values,
        )

    def touch(self, launch_id: str, attempt: int) -> None:
        """Mark an active item checked by the reconciler (``checked_at``), so it is not re-checked every run.

        Not a change: ``rev`` and ``changed_at`` stay, so the change feed does not show it. A check that found
        the task also forgets an earlier MISSING answer (``missing_since``).
        """
        names = {"#a": Attr.ATTEMPT, "#on": Attr.ACTIVE, "#chk": Attr.CHECKED_AT, "#m": Attr.MISSING_SINCE}
        values: dict[str, Any] = {":a": attempt, ":now": self._now_ms()}
        self._update(
            launch_id,
            sets=["#chk = :now"],
            condition="#a = :a AND attribute_exists(#on)",
            names=names,
            values=values,
            removes=["#m"],
        )

    def write_heartbeat(self, **facts: int | str) -> None:
        """Record that the control plane's periodic work ran (the executor's health check reads it)."""
        values = {Attr.PK: HEARTBEAT_KEY, "heartbeat_at": self._now_ms(), **facts}
        self.client.put_item(TableName=self.table_name, Item=_serialize(values))

    def read_heartbeat(self) -> dict[str, Any] | None:
        """Return the last heartbeat (``heartbeat_at`` epoch ms and facts), or None if none was written."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={Attr.PK: {"S": HEARTBEAT_KEY}}, ConsistentRead=True
        )
        return _deserialize(resp["Item"]) if "Item" in resp else None


def table_definition(table_name: str) -> dict[str, Any]:
    """Return CreateTable arguments for the tasks table (the stack defines the same keys, indexes and projections)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": Attr.PK, "AttributeType": "S"},
            {"AttributeName": Attr.OWNER, "AttributeType": "S"},
            {"AttributeName": Attr.CHANGED_AT, "AttributeType": "N"},
            {"AttributeName": Attr.ACTIVE, "AttributeType": "S"},
            {"AttributeName": Attr.CHECKED_AT, "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": Attr.PK, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": CHANGE_INDEX,
                "KeySchema": [
                    {"AttributeName": Attr.OWNER, "KeyType": "HASH"},
                    {"AttributeName": Attr.CHANGED_AT, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(CHANGE_INDEX_ATTRIBUTES),
                },
            },
            {
                "IndexName": STALE_INDEX,
                "KeySchema": [
                    {"AttributeName": Attr.ACTIVE, "KeyType": "HASH"},
                    {"AttributeName": Attr.CHECKED_AT, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }
