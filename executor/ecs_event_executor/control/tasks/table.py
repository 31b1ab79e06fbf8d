"""The tasks table: reads, and named conditional writes that each enforce one rule of the lifecycle.

The launcher creates an item, the status handler moves it along ECS's lifecycle, the reconciler ends what ECS
lost, the executor reads it. Every write is conditional:

- the state moves only as ``lifecycle.TRANSITIONS`` allows (each write derives its accepted states from it with
  ``sources_of``), so a state never moves backwards within an attempt and a terminal state is final;
- ECS events are applied in ``detail.version`` order: an older or equal version is a late duplicate and is dropped;
- an event for an earlier attempt (an ECS task that was replaced after an infrastructure failure) is dropped.
"""

from __future__ import annotations

import zlib
from typing import Any

from botocore.exceptions import ClientError

from ecs_event_executor.control.messages import CancelRequest, LaunchRequest
from ecs_event_executor.control.tasks.item import (
    Claim,
    ClaimOutcome,
    EcsSnapshot,
    EventOutcome,
    TaskItem,
    history_entry,
    history_key,
    serialize,
    superseded_history_keys,
)
from ecs_event_executor.control.tasks.lifecycle import ACTIVE_STATES, TaskState, sources_of
from ecs_event_executor.control.tasks.reads import TaskReads
from ecs_event_executor.control.tasks.schema import (
    HEARTBEAT_KEY,
    REQUEST_EXPIRY_MARGIN_SECONDS,
    REQUEST_RETENTION_SECONDS,
    Attr,
    active_shard,
    request_key,
)
from ecs_event_executor.control.tasks.updates import Update

# Reasons are cut so one long message cannot push the item over DynamoDB's item size.
REASON_CHARS = 2000
# The task fields of an attempt, cleared when the next one starts.
_ATTEMPT_FIELDS = (
    Attr.ECS_VERSION,
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


class LaunchIdTaken(ValueError):
    """A launch request reuses a launch id whose stored request differs: it must not replace it."""


def request_expires_at(request: LaunchRequest) -> int:
    """Return when a launch request's side item expires (epoch seconds): when the launch can no longer start."""
    if request.launch_deadline is not None:
        return int(request.launch_deadline.timestamp()) + REQUEST_EXPIRY_MARGIN_SECONDS
    return int(request.queued_at.timestamp()) + REQUEST_RETENTION_SECONDS


# Ended without a task: one that RunTask started anyway (a race with a cancel or an expiry) is stopped, not adopted.
_NOT_STARTED = (TaskState.CANCELLED, TaskState.EXPIRED)


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _enter_stale_index(update: Update, launch_id: str, now: int) -> Update:
    """Put the item in the stale index (``schema``: only launches waiting without an ECS task are in it)."""
    return update.set(Attr.ACTIVE, active_shard(launch_id)).set(Attr.CHECKED_AT, now)


def _leave_stale_index(update: Update) -> Update:
    """Take the item out of the stale index; for an item not in it, removing absent attributes writes no entry."""
    return update.remove(Attr.ACTIVE, Attr.CHECKED_AT)


class TaskTable(TaskReads):
    """Read task items and change them by named conditional writes, each the rule it enforces."""

    # ------------------------------------------------------ building writes

    def _change(self, now: int, *, feed: bool = True) -> Update:
        """Start a write: a new ``rev``, and with ``feed`` the change time that puts the item in its owner's change
        feed (an index write: only for what the executor acts on)."""
        update = Update().increment(Attr.REV)
        return update.set(Attr.CHANGED_AT, now) if feed else update

    def _finish(self, update: Update, now: int) -> Update:
        """Add what every terminal write does: finish time, TTL, and leaving the stale index (with its sort key:
        every byte of the item is billed on every later write)."""
        update.set(Attr.FINISHED_AT, now).set(Attr.EXPIRES_AT, now // 1000 + self.finished_ttl_seconds)
        return update.remove(Attr.ACTIVE, Attr.CHECKED_AT, Attr.MISSING_SINCE, Attr.RETRY_AT)

    def _write(self, launch_id: str, update: Update, *, returns: bool = True) -> tuple[bool, TaskItem | None]:
        """Run one conditional UpdateItem; return (written, the item after, or as it was when the condition failed).

        With ``returns`` False a written item is not sent back (None): the caller has no use for it, and
        DynamoDB's answer, its parsing and its deserializing are the larger part of the write's CPU.
        """
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={Attr.PK: {"S": launch_id}},
                ReturnValues="ALL_NEW" if returns else "NONE",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update.arguments(),
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            old = exc.response.get("Item")
            return False, (TaskItem.from_raw(old) if old else self.get(launch_id))
        return True, (TaskItem.from_raw(resp["Attributes"]) if returns else None)

    # ------------------------------------------------------------ the launcher

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
            Attr.HISTORY: {history_key(TaskState.LAUNCHING, 1): history_entry(now)},
        }
        # Not in the stale index (``schema``): its queue message brings it back until it launches or fails, and
        # ECS lists the task it starts.
        if request.team:
            values[Attr.TEAM] = request.team
        if not self._create(values):
            # A redelivered or duplicated message: the item exists. Take the lease if its launcher went away.
            return self.claim_attempt(request.launch_id, 1, lease_seconds=lease_seconds)
        # The item is exactly what was written: no need to read it back.
        return Claim(ClaimOutcome.CLAIMED, TaskItem.from_raw(serialize(values)))

    def _create(self, values: dict[str, Any]) -> bool:
        """Put a new task item; return False, writing nothing, if one exists under its key."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=serialize(values),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": Attr.PK},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            return False
        return True

    def _put_request(self, request: LaunchRequest) -> None:
        """Write the launch request's side item: compressed, in no index, expiring when the launch can no longer
        start (``request_expires_at``; DynamoDB TTL deletes cost nothing).

        Written only if absent or identical (a redelivery): a message reusing another launch's id must not
        replace the request that launch's relaunches read. Raises LaunchIdTaken then.
        """
        body = zlib.compress(request.to_json().encode(), 9)
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    Attr.PK: {"S": request_key(request.launch_id)},
                    Attr.REQUEST: {"B": body},
                    Attr.EXPIRES_AT: {"N": str(request_expires_at(request))},
                },
                ConditionExpression="attribute_not_exists(#pk) OR #request = :request",
                ExpressionAttributeNames={"#pk": Attr.PK, "#request": Attr.REQUEST},
                ExpressionAttributeValues={":request": {"B": body}},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            raise LaunchIdTaken(
                f"launch_id: {request.launch_id} is already used by another launch request; refused"
            ) from None

    def create_refused(self, request: LaunchRequest, *, reason: str) -> bool:
        """Record a launch the launcher refused (FAILED, with ``reason``) unless an item exists under its id.

        Nothing of the request is stored (its command is what was refused); an existing item, another launch's
        perhaps, is left alone. Returns whether the item was written.
        """
        now = self._now_ms()
        values: dict[str, Any] = {
            Attr.PK: request.launch_id,
            Attr.OWNER: request.owner,
            Attr.STATE: TaskState.FAILED.value,
            Attr.REASON: reason[:REASON_CHARS],
            Attr.REV: 1,
            Attr.CHANGED_AT: now,
            Attr.ATTEMPT: 1,
            Attr.DAG_ID: request.key.dag_id,
            Attr.TASK_ID: request.key.task_id,
            Attr.RUN_ID: request.key.run_id,
            Attr.MAP_INDEX: request.key.map_index,
            Attr.TRY_NUMBER: request.key.try_number,
            Attr.QUEUED_AT: int(request.queued_at.timestamp() * 1000),
            Attr.FINISHED_AT: now,
            Attr.EXPIRES_AT: now // 1000 + self.finished_ttl_seconds,
            Attr.HISTORY: {history_key(TaskState.FAILED, 1): history_entry(now)},
        }
        if request.team:
            values[Attr.TEAM] = request.team
        return self._create(values)

    def claim_attempt(self, launch_id: str, attempt: int, *, lease_seconds: float) -> Claim:
        """Take the launch lease for ``attempt`` if no ECS task is known for it and no live lease is held."""
        now = self._now_ms()
        update = self._change(now, feed=False).set(Attr.LEASE_UNTIL, now + int(lease_seconds * 1000))
        update.require(
            update.state_in(sources_of(TaskState.LAUNCHING, only={TaskState.LAUNCHING})),
            update.equals(Attr.ATTEMPT, attempt),
            update.absent(Attr.TASK_ARN),
            update.either(update.absent(Attr.LEASE_UNTIL), update.below(Attr.LEASE_UNTIL, now)),
        )
        written, item = self._write(launch_id, update)
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
        returns: bool = True,
    ) -> tuple[bool, TaskItem | None]:
        """Record the ECS task RunTask returned. Returns (recorded, item); not recorded when the launch was
        cancelled meanwhile (the caller then stops the task) or an event already recorded it. With ``returns``
        False a recorded item is not read back (None); one not recorded always is.

        The item leaves the stale index if it was in it (a relaunch, a launch that backed off): from now on ECS
        lists its task, and the reconciler finds it there once it stops.
        """
        now = self._now_ms()
        update = (
            self._change(now, feed=False).set(Attr.TASK_ARN, task_arn).set_if_absent(Attr.LAUNCHED_AT, now)
        )
        if cluster_arn:
            update.set(Attr.CLUSTER_ARN, cluster_arn)
        entry = history_entry(now, task_arn=task_arn)
        update.set(Attr.STATE, TaskState.PENDING.value).remove(Attr.LEASE_UNTIL)
        update.set_in_map_if_absent(Attr.HISTORY, history_key(TaskState.PENDING, attempt), entry)
        _leave_stale_index(update)
        # Only a LAUNCHING item moves to PENDING: if an ECS event came first it already holds a later state.
        update.require(
            update.state_in(sources_of(TaskState.PENDING, only={TaskState.LAUNCHING})),
            update.equals(Attr.ATTEMPT, attempt),
        )
        written, item = self._write(launch_id, update, returns=returns)
        if written or item is None or item.state in _NOT_STARTED or item.attempt != attempt:
            return written, item
        # An ECS event for this attempt arrived before RunTask returned: it holds a later state; add the ARN only.
        update = self._change(now, feed=False)
        update.set_if_absent(Attr.TASK_ARN, task_arn).set_if_absent(Attr.LAUNCHED_AT, now)
        _leave_stale_index(update)
        return self._write(launch_id, update.require(update.equals(Attr.ATTEMPT, attempt)), returns=returns)

    def release_lease(
        self, launch_id: str, attempt: int, *, reason: str, retry_in_seconds: float | None = None
    ) -> None:
        """Give up the lease after a retryable failure, leaving the reason for operators and the executor, and
        when the launch comes back (``retry_in_seconds``: the queue's visibility timeout), so the reconciler
        tells a launch that is backing off from one whose message was lost."""
        now = self._now_ms()
        update = self._change(now).set(Attr.REASON, reason[:REASON_CHARS]).remove(Attr.LEASE_UNTIL)
        if retry_in_seconds is not None:
            # Backing off without an ECS task: the stale index holds it, so a retry whose message is lost is found.
            update.set(Attr.RETRY_AT, now + int(retry_in_seconds * 1000))
            _enter_stale_index(update, launch_id, now)
        update.require(
            update.state_in(sources_of(TaskState.LAUNCHING, only={TaskState.LAUNCHING})),
            update.equals(Attr.ATTEMPT, attempt),
        )
        self._write(launch_id, update)

    def _failure(self, attempt: int, reason: str) -> Update:
        """Start a write that ends a launch FAILED with ``reason``."""
        now = self._now_ms()
        update = (
            self._change(now).set(Attr.STATE, TaskState.FAILED.value).set(Attr.REASON, reason[:REASON_CHARS])
        )
        update.set_in_map_if_absent(Attr.HISTORY, history_key(TaskState.FAILED, attempt), history_entry(now))
        return (
            self._finish(update, now).remove(Attr.LEASE_UNTIL).require(update.equals(Attr.ATTEMPT, attempt))
        )

    def fail_launch(self, launch_id: str, attempt: int, *, reason: str) -> tuple[bool, TaskItem | None]:
        """End a launch FAILED before any ECS task ran for it (permanent RunTask error, deadline passed)."""
        update = self._failure(attempt, reason)
        update.require(
            update.state_in(sources_of(TaskState.FAILED, only={TaskState.LAUNCHING})),
            update.absent(Attr.TASK_ARN),
        )
        return self._write(launch_id, update)

    def expire_launch(self, launch_id: str, attempt: int, *, reason: str) -> tuple[bool, TaskItem | None]:
        """End a launch EXPIRED: no ECS task was started and none can start before the workload's token expires.

        Not a failure: the executor hands the task instance back to Airflow, which revokes and requeues it.
        """
        now = self._now_ms()
        update = (
            self._change(now).set(Attr.STATE, TaskState.EXPIRED.value).set(Attr.REASON, reason[:REASON_CHARS])
        )
        update.set_in_map_if_absent(Attr.HISTORY, history_key(TaskState.EXPIRED, attempt), history_entry(now))
        self._finish(update, now).remove(Attr.LEASE_UNTIL)
        update.require(
            update.equals(Attr.ATTEMPT, attempt),
            update.state_in(sources_of(TaskState.EXPIRED, only={TaskState.LAUNCHING})),
            update.absent(Attr.TASK_ARN),
        )
        return self._write(launch_id, update)

    # ------------------------------------------------------ the status handler

    def apply_ecs_event(
        self, launch_id: str, attempt: int, snap: EcsSnapshot, *, returns: bool = True
    ) -> tuple[EventOutcome, TaskItem | None]:
        """Apply one ECS event to the item, in ``detail.version`` order, for the attempt that started the task.

        Returns what the write did and the item: as written (None with ``returns`` False), or as it was when the
        event was stale.
        """
        now = self._now_ms()
        # Only an outcome goes to the executor's feed; PENDING and RUNNING are for operators and the reconciler.
        update = self._change(now, feed=snap.state.terminal).set(Attr.STATE, snap.state.value)
        update.set(Attr.ECS_LAST_STATUS, snap.last_status).set(Attr.TASK_ARN, snap.task_arn)
        if snap.version is not None:
            update.set(Attr.ECS_VERSION, snap.version)
        for attr, value in (
            (Attr.CLUSTER_ARN, snap.cluster_arn),
            (Attr.REASON, snap.reason[:REASON_CHARS] if snap.reason else None),
            (Attr.STOP_CODE, snap.stop_code),
            (Attr.EXIT_CODE, snap.exit_code),
        ):
            if value is not None:
                update.set(attr, value)
        if snap.state is TaskState.RUNNING:
            update.set_if_absent(Attr.RUNNING_AT, now)
        if snap.state.terminal:
            self._finish(update, now)
        else:
            # A task exists: ECS lists it (a relaunch whose launch record was lost leaves the stale index here).
            _leave_stale_index(update)
        reason = None if snap.state.terminal else snap.reason
        entry = history_entry(now, ecs=snap.last_status, version=snap.version, reason=reason)
        update.set_in_map_if_absent(Attr.HISTORY, history_key(snap.state, attempt), entry)
        update.require(
            update.equals(Attr.ATTEMPT, attempt),
            update.state_in(sources_of(snap.state)),
            self._newer_version(update, snap.version),
            # An event of another ECS task (one whose marks name this launch) never replaces the attempt's task.
            update.either(update.absent(Attr.TASK_ARN), update.equals(Attr.TASK_ARN, snap.task_arn)),
        )
        written, item = self._write(launch_id, update, returns=returns)
        if written:
            return EventOutcome.APPLIED, item
        return (EventOutcome.UNKNOWN if item is None else EventOutcome.STALE), item

    @staticmethod
    def _newer_version(update: Update, version: int | None) -> str:
        """Return "the event is newer than the last applied"; an event without a version may only be the first."""
        if version is None:
            return update.absent(Attr.ECS_VERSION)
        return update.either(update.absent(Attr.ECS_VERSION), update.below(Attr.ECS_VERSION, version))

    def schedule_relaunch(
        self, launch_id: str, attempt: int, snap: EcsSnapshot
    ) -> tuple[bool, TaskItem | None]:
        """Move to the next attempt after an infrastructure failure: LAUNCHING again, attempt + 1, task fields cleared.

        Conditional on the same attempt and an older ECS version, so a duplicate of the failing event cannot
        relaunch twice.
        """
        now = self._now_ms()
        update = self._change(now).set(Attr.STATE, TaskState.LAUNCHING.value).set(Attr.ATTEMPT, attempt + 1)
        update.set(Attr.REASON, f"attempt {attempt} failed, relaunching: {snap.reason or ''}"[:REASON_CHARS])
        entry = history_entry(now, ecs=snap.last_status, version=snap.version, reason=snap.reason)
        update.set_in_map_if_absent(Attr.HISTORY, history_key(TaskState.LAUNCHING, attempt + 1), entry)
        update.remove_from_map(Attr.HISTORY, superseded_history_keys(attempt + 1))
        update.remove(*_ATTEMPT_FIELDS)
        # No ECS task until the relaunch message is handled, and its publish could be lost: the stale index holds
        # it (the reconciler publishes it again once its period passed).
        _enter_stale_index(update, launch_id, now)
        update.require(
            update.equals(Attr.ATTEMPT, attempt),
            update.state_in(sources_of(TaskState.LAUNCHING)),
            self._newer_version(update, snap.version),
        )
        return self._write(launch_id, update)

    # ---------------------------------------------------- cancels and owners

    def finish_cancelled(self, request: CancelRequest) -> tuple[bool, TaskItem | None]:
        """Cancel a launch that has no ECS task yet (creating a CANCELLED item if the launch has not arrived)."""
        now = self._now_ms()
        update = self._change(now).set(Attr.STATE, TaskState.CANCELLED.value).set(Attr.REASON, request.reason)
        update.set_if_absent(Attr.OWNER, request.owner).remove(Attr.LEASE_UNTIL)
        update.set_in_map_if_absent(Attr.HISTORY, history_key(TaskState.CANCELLED, 1), history_entry(now))
        update.require(
            update.state_in(sources_of(TaskState.CANCELLED, only={TaskState.LAUNCHING})),
            update.absent(Attr.TASK_ARN),
            self._same_team(update, request.team),
        )
        written, item = self._write(request.launch_id, self._finish(update, now))
        if written or item is not None:
            return written, item
        # No item yet: create it CANCELLED, so a launch message that arrives later finds it and does nothing.
        values: dict[str, Any] = {
            Attr.PK: request.launch_id,
            Attr.REV: 1,
            Attr.CHANGED_AT: now,
            Attr.STATE: TaskState.CANCELLED.value,
            Attr.REASON: request.reason,
            Attr.OWNER: request.owner,
            Attr.FINISHED_AT: now,
            Attr.EXPIRES_AT: now // 1000 + self.finished_ttl_seconds,
            Attr.HISTORY: {history_key(TaskState.CANCELLED, 1): history_entry(now)},
        }
        if request.team:
            values[Attr.TEAM] = request.team
        if self._create(values):
            return True, TaskItem.from_raw(serialize(values))
        # The launch created it meanwhile: cancel that one.
        return self.finish_cancelled(request)

    def mark_cancel_requested(
        self, launch_id: str, *, reason: str, team: str | None = None
    ) -> tuple[bool, TaskItem | None]:
        """Note that a running launch of ``team`` is being stopped (the ECS STOPPED event ends it)."""
        update = (
            self._change(self._now_ms(), feed=False).set(Attr.CANCEL_REQUESTED, True).set(Attr.REASON, reason)
        )
        return self._write(
            launch_id, update.require(update.state_in(ACTIVE_STATES), self._same_team(update, team))
        )

    def set_owner(
        self, launch_id: str, owner: str, *, team: str | None = None
    ) -> tuple[bool, TaskItem | None]:
        """Move an item of ``team`` to a new owner; the write also re-stamps it, so the new owner's change feed
        shows it."""
        update = self._change(self._now_ms()).set(Attr.OWNER, owner)
        return self._write(
            launch_id, update.require(update.exists(Attr.OWNER), self._same_team(update, team))
        )

    @staticmethod
    def _same_team(update: Update, team: str | None) -> str:
        """Return "the item belongs to ``team``" (no team: an item without one): teams never touch each other's."""
        return update.equals(Attr.TEAM, team) if team else update.absent(Attr.TEAM)

    # ---------------------------------------------------------- the reconciler

    def fail_lost(
        self, launch_id: str, attempt: int, *, task_arn: str, reason: str
    ) -> tuple[bool, TaskItem | None]:
        """End a launch whose ECS task ECS no longer knows (its events were lost and it aged out)."""
        update = self._failure(attempt, reason)
        update.require(update.state_in(sources_of(TaskState.FAILED)), update.equals(Attr.TASK_ARN, task_arn))
        return self._write(launch_id, update)

    def mark_missing(self, launch_id: str, attempt: int, *, task_arn: str) -> tuple[bool, TaskItem | None]:
        """Note the first time DescribeTasks answered MISSING for the task (``missing_since``), if not noted yet.

        Not a change and not a check: ``checked_at`` stays, so the next pass asks ECS again.
        """
        update = Update().set(Attr.MISSING_SINCE, self._now_ms())
        update.require(
            update.equals(Attr.ATTEMPT, attempt),
            update.equals(Attr.TASK_ARN, task_arn),
            update.state_in(ACTIVE_STATES),
            update.absent(Attr.MISSING_SINCE),
        )
        return self._write(launch_id, update)

    def touch(self, launch_id: str, attempt: int) -> None:
        """Mark an item of the stale index checked by the reconciler (``checked_at``), so it is not re-checked
        every run: a relaunch it published, or an item written by the previous version (which kept every active
        item in the index).

        Not a change: ``rev`` and ``changed_at`` stay, so the change feed does not show it. A check that found
        the task also forgets an earlier MISSING answer (``missing_since``).
        """
        update = Update().set(Attr.CHECKED_AT, self._now_ms()).remove(Attr.MISSING_SINCE)
        self._write(
            launch_id, update.require(update.equals(Attr.ATTEMPT, attempt), update.exists(Attr.ACTIVE))
        )

    def write_heartbeat(self, **facts: int | str) -> None:
        """Record that the control plane's periodic work ran (the executor's health check reads it)."""
        self.note_heartbeat(heartbeat_at=self._now_ms(), **facts)

    def note_heartbeat(self, **facts: int | str) -> None:
        """Set facts on the heartbeat item, keeping the others' (the launcher, the status function and the
        reconciler each note their own: control/health.py)."""
        names = {f"#f{i}": name for i, name in enumerate(facts)}
        values = serialize({f":f{i}": value for i, value in enumerate(facts.values())})
        self.client.update_item(
            TableName=self.table_name,
            Key=serialize({Attr.PK: HEARTBEAT_KEY}),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(facts))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
