"""Apply ECS "Task State Change" events to task items: one conditional write per event, in version order.

The item is found from what the event itself carries (the launch id and attempt in the container override's
environment), so an event that arrives before the launcher recorded the task ARN still lands. Events for tasks
this control plane did not start are ignored.

The stack's rule invokes the status function with STOPPING, STOPPED (not a Fargate task's after an essential
container's exit: its STOPPING carried it) and a RUNNING whose desired status is STOPPED (see ``ecs_state``); the
local runner's rule is the same. The final state lands when it is certain: at STOPPING when the Airflow container's
exit code is there (ECS stops a task because its essential container exited), otherwise at STOPPED, or at the
reconciler's next pass when no delivered event carries it (a Fargate task whose essential sidecar exited first).
Only events that can change our state are written: a PENDING outcome (the launcher recorded PENDING when RunTask
returned) and a RUNNING outcome while the task is on its way down without an exit code (DEACTIVATING, STOPPING,
DEPROVISIONING) are skipped; the RUNNING event itself (also a Spot warning, which records the reason) and every
terminal outcome are written. A STOPPED event whose task an earlier event already finished (the exit code at
STOPPING) is dropped after an eventually consistent read, which costs a fraction of a failed conditional write.

``StatusTracker.handle`` raises only for failures worth retrying (AWS errors, a refused relaunch publish): the
status Lambda raises, Lambda retries the invocation, then the reconciler replays it (``failed_events``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from ecs_event_executor.control import bus as bus_events
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.bus import ControlPlaneBus
from ecs_event_executor.control.ecs_state import (
    ATTEMPT_ENV,
    LAUNCH_ID_ENV,
    STARTED_BY,
    Outcome,
    TaskStateChange,
    map_event,
)
from ecs_event_executor.control.environment import LambdaEnvironment
from ecs_event_executor.control.health import HealthNotes
from ecs_event_executor.control.messages import RelaunchRequest, describe_validation_error
from ecs_event_executor.control.tasks.item import EcsSnapshot, EventOutcome
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

log = logging.getLogger(__name__)


class StatusResult(StrEnum):
    """What one event did (logged and counted as a metric)."""

    APPLIED = "Applied"
    FINISHED = "Finished"
    RELAUNCHED = "Relaunched"
    STALE = "Stale"  # late, duplicate, or for an earlier attempt
    SKIPPED = "Skipped"  # a step that cannot change our state (PENDING, or going down without an exit code)
    UNKNOWN_TASK = "UnknownTask"  # carries our marks but no item exists (expired, or another deployment)
    NOT_OURS = "NotOurs"
    MALFORMED = "Malformed"


@dataclass(frozen=True)
class StatusSettings:
    table_name: str
    container_name: str
    cluster: str | None = None
    event_bus_name: str | None = None
    # Publish routine notifications (a task finished successfully) too, not only failures and relaunches.
    publish_all_events: bool = False
    # The clusters of the launch profiles (LAUNCH_PROFILES): their tasks are ours too.
    profile_clusters: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StatusSettings:
        """Read the status handler's environment; a missing or bad variable raises naming it."""
        return cls.from_environment(LambdaEnvironment.read(env))

    @classmethod
    def from_environment(cls, env: LambdaEnvironment) -> StatusSettings:
        """Take the status handler's settings from an already read environment."""
        return cls(
            table_name=env.require(env_vars.TASKS_TABLE_NAME),
            container_name=env.require(env_vars.CONTAINER_NAME),
            cluster=env.cluster,
            event_bus_name=env.event_bus_name,
            publish_all_events=env.publish_all_events,
            profile_clusters=tuple(p.cluster for p in env.launch_profiles.values() if p.cluster),
        )


class StatusTracker:
    """Map ECS events to task-item writes. Clients are injectable."""

    def __init__(
        self,
        settings: StatusSettings,
        *,
        table: TaskTable | None = None,
        bus: ControlPlaneBus | None = None,
        health: HealthNotes | None = None,
    ) -> None:
        self.settings = settings
        self.table = table or TaskTable(settings.table_name)
        self.bus = bus or ControlPlaneBus(settings.event_bus_name, publish_all=settings.publish_all_events)
        # The status function notes that events arrive, the reconciler that it applied a final state itself
        # (check_health reads both); None: not noted (tests).
        self.health = health

    def handle(self, event: Mapping[str, Any]) -> StatusResult:
        """Apply one ECS event; never raise for a bad event (only for AWS failures, to be retried)."""
        try:
            change = TaskStateChange.model_validate(event)
        except ValidationError as exc:
            log.warning(
                "malformed ECS event",
                extra={
                    "reason": describe_validation_error(exc),
                    "event_id": event.get("id") if isinstance(event, Mapping) else None,
                },
            )
            return StatusResult.MALFORMED
        detail = change.detail
        env = detail.environment(self.settings.container_name)
        launch_id = env.get(LAUNCH_ID_ENV)
        if detail.started_by != STARTED_BY or not launch_id or not self._our_cluster(detail.cluster_arn):
            return StatusResult.NOT_OURS
        try:
            attempt = int(env.get(ATTEMPT_ENV, "1"))
        except ValueError:
            log.warning(
                "malformed attempt in ECS event",
                extra={"launch_id": launch_id, "value": env.get(ATTEMPT_ENV)},
            )
            return StatusResult.MALFORMED
        if self.health is not None:
            self.health.event_seen(self.table)
        outcome = map_event(detail, self.settings.container_name)
        if not can_change_state(outcome, detail.last_status):
            log.debug(
                "ecs event skipped",
                extra={"launch_id": launch_id, "attempt": attempt, "ecs": detail.last_status},
            )
            return StatusResult.SKIPPED
        snap = EcsSnapshot(
            state=outcome.state,
            task_arn=detail.task_arn,
            version=detail.version,
            last_status=detail.last_status,
            cluster_arn=detail.cluster_arn,
            reason=outcome.reason,
            stop_code=detail.stop_code,
            exit_code=outcome.exit_code,
        )
        if outcome.state is TaskState.FAILED:
            special = self._failed(launch_id, attempt, outcome, snap)
            if isinstance(special, StatusResult):
                return special
            snap = special
        elif detail.last_status == "STOPPED" and self._finished_already(launch_id, attempt):
            return StatusResult.STALE
        # The written item is only read for the notification of a finished task (its Airflow key).
        notify = snap.state.terminal and self.bus.publishes(routine=snap.state is TaskState.SUCCEEDED)
        result, item = self.table.apply_ecs_event(launch_id, attempt, snap, returns=notify)
        # DEBUG: the item records what the event did and the handler logs one INFO line per batch (log ingestion
        # per event line cost more than the event's write; docs/bench.md).
        log.debug(
            "ecs event",
            extra={
                "launch_id": launch_id,
                "attempt": attempt,
                "ecs": detail.last_status,
                "version": detail.version,
                "result": result.value,
            },
        )
        if result is EventOutcome.UNKNOWN:
            return StatusResult.UNKNOWN_TASK
        if result is EventOutcome.STALE:
            return StatusResult.STALE
        if snap.state.terminal:
            if self.health is not None:
                self.health.final_applied(self.table)
            if not notify or item is None:
                return StatusResult.FINISHED
            detail_out: dict[str, Any] = {
                "launch_id": launch_id,
                "attempt": attempt,
                "state": snap.state.value,
                "reason": snap.reason,
                "exit_code": snap.exit_code,
                "task_arn": detail.task_arn,
            }
            if item.key is not None:
                detail_out.update(item.key.model_dump())
            # A success is routine (published only with PUBLISH_ALL_EVENTS); a failure or cancellation always.
            self.bus.publish(bus_events.TASK_FINISHED, detail_out, routine=snap.state is TaskState.SUCCEEDED)
            return StatusResult.FINISHED
        return StatusResult.APPLIED

    def _failed(
        self, launch_id: str, attempt: int, outcome: Outcome, snap: EcsSnapshot
    ) -> StatusResult | EcsSnapshot:
        """Decide what a failed ECS task means: relaunch, cancelled by us, or failed (with the attempt count)."""
        item = self.table.get(launch_id)
        if item is None:
            return StatusResult.UNKNOWN_TASK
        if item.attempt == attempt and item.state.terminal:
            return StatusResult.STALE
        # Our own StopTask (revoke, terminate): the container may still leave an exit code (137 after SIGKILL).
        if item.cancel_requested and snap.stop_code == "UserInitiated":
            return replace(
                snap, state=TaskState.CANCELLED, reason=f"{item.reason or 'cancelled'} ({outcome.reason})"
            )
        if not outcome.infrastructure_failure:
            return snap
        if (
            item.attempt == attempt
            and attempt < item.max_attempts
            and not item.state.terminal
            and not item.cancel_requested
        ):
            relaunched, _ = self.table.schedule_relaunch(launch_id, attempt, snap)
            if relaunched:
                self._request_relaunch(launch_id, attempt + 1)
                return StatusResult.RELAUNCHED
            return StatusResult.STALE
        if item.attempt == attempt + 1 and item.state is TaskState.LAUNCHING and item.task_arn is None:
            # A retried delivery of the event whose relaunch was written but perhaps never published.
            self._request_relaunch(launch_id, attempt + 1)
            return StatusResult.RELAUNCHED
        if attempt >= item.max_attempts:
            return replace(
                snap, reason=f"{outcome.reason} (gave up after {attempt} of {item.max_attempts} attempts)"
            )
        return snap

    def _finished_already(self, launch_id: str, attempt: int) -> bool:
        """Return whether this attempt already ended (read eventually consistent: a terminal state is final, so
        a stale read can only make the caller try its conditional write, never skip a needed one)."""
        item = self.table.get(launch_id, consistent=False)
        return item is not None and item.attempt == attempt and item.state.terminal

    def _request_relaunch(self, launch_id: str, attempt: int) -> None:
        message = RelaunchRequest(launch_id=launch_id, attempt=attempt)
        # Required: if the bus refuses it, the event fails and SQS delivers it again (the relaunch is idempotent).
        self.bus.publish(
            bus_events.RELAUNCH_REQUESTED, message.model_dump(by_alias=True, mode="json"), required=True
        )

    def _our_cluster(self, cluster_arn: str | None) -> bool:
        wanted = self.settings.cluster
        if not wanted or not cluster_arn:
            return True
        return any(
            cluster_arn == one or cluster_arn.rsplit("/", 1)[-1] == one.rsplit("/", 1)[-1]
            for one in (wanted, *self.settings.profile_clusters)
        )


def can_change_state(outcome: Outcome, last_status: str) -> bool:
    """Return whether an event mapped to ``outcome`` can change a task item, so is worth a write.

    PENDING is recorded by the launcher when RunTask returns; a RUNNING outcome counts only from the RUNNING
    event (the first one, or a Spot warning with its reason), not from a task on its way down without an exit code.
    """
    if outcome.state is TaskState.PENDING:
        return False
    if outcome.state is TaskState.RUNNING:
        return last_status == "RUNNING"
    return True
