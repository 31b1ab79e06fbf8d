"""ECS "Task State Change" events: the typed model, and the one pure function that maps them to our state.

The models ignore unknown fields (AWS adds fields over time) and accept partial events; the mapping decides on
the Airflow container alone, by name, so a sidecar's exit never decides a task's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecs_event_executor.control.tasks.lifecycle import TaskState

# Environment variables the launcher sets on the Airflow container. ECS echoes container-override environment in
# every task event (tags are not echoed), so these are how the status handler finds the item.
LAUNCH_ID_ENV = "AIRFLOW_ECS_EVENT_LAUNCH_ID"
ATTEMPT_ENV = "AIRFLOW_ECS_EVENT_ATTEMPT"

# ECS allows 36 characters for startedBy; the EventBridge rule matches this exact value.
STARTED_BY = "airflow-ecs-event-executor"
# The events the stack's rule delivers, each one a Lambda invocation:
# - STOPPING: ECS stops a task because its essential container exited, so the Airflow container's exit code is there
#   and final: the task finishes at once.
# - STOPPED, the final word when STOPPING could not be: StopTask, Spot, a failed start, a task on EC2 (whose agent
#   may report RUNNING -> STOPPED with no STOPPING between) or of unknown launch type. Not a Fargate task stopped
#   because an essential container exited: its STOPPING carried that exit, and the STOPPED after it (its Lambda
#   request, a read and GB-s per task) changed nothing. When the container that exited was a sidecar, not the
#   Airflow container, the item waits for the reconciler's next pass, which reads the stopped task from ECS.
# - any event whose desiredStatus is STOPPED (the Spot interruption warning arrives while the task is RUNNING; its
#   reason is recorded at once).
# Plain RUNNING is not delivered: Airflow learns RUNNING from the worker itself, and the delivery, invocation and
# write it cost per task changed nothing the executor reads (the item stays PENDING from the launch record until
# the task stops). DEPROVISIONING is not delivered either: after a STOPPING with the exit code it would be one
# more invocation and failed write per task. The handler still skips, without a write, an event that cannot
# change the item (the local runner's ECS sends every step).
STATUS_EVENT_LAST_STATUSES = ("STOPPING",)
STATUS_EVENT_FINAL_LAST_STATUSES = ("STOPPED",)
# The STOPPED events not delivered: this launch type with this stop code (both must be present and equal).
STATUS_EVENT_SKIPPED_FINAL_LAUNCH_TYPE = "FARGATE"
STATUS_EVENT_SKIPPED_FINAL_STOP_CODE = "EssentialContainerExited"
# With desiredStatus STOPPED, a RUNNING event is delivered too (a Spot warning, or a StopTask on a running task).
STATUS_EVENT_DESIRED_STATUSES = ("STOPPED",)
STATUS_EVENT_WARNING_LAST_STATUSES = ("RUNNING",)


def status_event_filter() -> dict[str, object]:
    """Return the part of the ECS rule's ``detail`` pattern that picks the events above (EventBridge ``$or``;
    ``anything-but`` matches only a field that is present, so each absent field has its own ``exists`` clause)."""
    final = list(STATUS_EVENT_FINAL_LAST_STATUSES)
    return {
        "$or": [
            {"lastStatus": list(STATUS_EVENT_LAST_STATUSES)},
            {"lastStatus": final, "launchType": [{"anything-but": STATUS_EVENT_SKIPPED_FINAL_LAUNCH_TYPE}]},
            {"lastStatus": final, "launchType": [{"exists": False}]},
            {"lastStatus": final, "stopCode": [{"anything-but": STATUS_EVENT_SKIPPED_FINAL_STOP_CODE}]},
            {"lastStatus": final, "stopCode": [{"exists": False}]},
            {
                "lastStatus": list(STATUS_EVENT_WARNING_LAST_STATUSES),
                "desiredStatus": list(STATUS_EVENT_DESIRED_STATUSES),
            },
        ]
    }


def is_status_event(detail: Mapping[str, Any]) -> bool:
    """Say whether the rule (``status_event_filter``) delivers an event with this ``detail`` (a task as
    DescribeTasks or the event shows it)."""
    last_status = detail.get("lastStatus")
    if last_status in STATUS_EVENT_LAST_STATUSES:
        return True
    if last_status in STATUS_EVENT_FINAL_LAST_STATUSES:
        return not (
            detail.get("launchType") == STATUS_EVENT_SKIPPED_FINAL_LAUNCH_TYPE
            and detail.get("stopCode") == STATUS_EVENT_SKIPPED_FINAL_STOP_CODE
        )
    return (
        last_status in STATUS_EVENT_WARNING_LAST_STATUSES
        and detail.get("desiredStatus") in STATUS_EVENT_DESIRED_STATUSES
    )


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class KeyValue(_Lenient):
    name: str = ""
    value: str = ""


class ContainerOverride(_Lenient):
    name: str = ""
    command: list[str] | None = None
    environment: list[KeyValue] = Field(default_factory=list)


class Overrides(_Lenient):
    container_overrides: list[ContainerOverride] = Field(default_factory=list, alias="containerOverrides")


class Container(_Lenient):
    name: str = ""
    last_status: str | None = Field(default=None, alias="lastStatus")
    exit_code: int | None = Field(default=None, alias="exitCode")
    reason: str | None = None


class TaskDetail(_Lenient):
    """The ``detail`` of an "ECS Task State Change" event (only the fields we use)."""

    task_arn: str = Field(alias="taskArn")
    cluster_arn: str | None = Field(default=None, alias="clusterArn")
    last_status: str = Field(alias="lastStatus")
    desired_status: str | None = Field(default=None, alias="desiredStatus")
    version: int | None = None
    stop_code: str | None = Field(default=None, alias="stopCode")
    stopped_reason: str | None = Field(default=None, alias="stoppedReason")
    started_at: datetime | None = Field(default=None, alias="startedAt")
    stopped_at: datetime | None = Field(default=None, alias="stoppedAt")
    started_by: str | None = Field(default=None, alias="startedBy")
    group: str | None = None
    containers: list[Container] = Field(default_factory=list)
    overrides: Overrides = Field(default_factory=Overrides)

    def environment(self, container_name: str) -> dict[str, str]:
        """Return the override environment of the Airflow container ``container_name`` only.

        The launcher sets its marks there; a sidecar's override environment comes from the task's
        ``executor_config`` and must not bind the task's events to another launch.
        """
        env: dict[str, str] = {}
        for override in self.overrides.container_overrides:
            if override.name == container_name:
                env.update({kv.name: kv.value for kv in override.environment})
        return env

    def task_id(self) -> str:
        """Return the short ECS task id (the last part of the ARN), as awslogs uses it in stream names."""
        return self.task_arn.rsplit("/", 1)[-1]


def airflow_environment(task: Mapping[str, Any], container_name: str) -> dict[str, str]:
    """Return the override environment of the Airflow container of a task as DescribeTasks shows it (the launcher's
    and the reconciler's reading of the marks, the status path's own rule); empty when the task cannot be read."""
    try:
        return TaskDetail.model_validate(task).environment(container_name)
    except ValidationError:
        return {}


class TaskStateChange(_Lenient):
    """An EventBridge "ECS Task State Change" event."""

    source: str
    detail_type: str = Field(alias="detail-type")
    time: datetime | None = None
    detail: TaskDetail


class Failure(StrEnum):
    """Why a task did not succeed, as a kind; the reason text carries the detail."""

    EXIT_CODE = "exit_code"
    FAILED_TO_START = "failed_to_start"
    STOPPED_BEFORE_START = "stopped_before_start"
    SPOT_INTERRUPTION = "spot_interruption"
    USER_STOPPED = "user_stopped"
    ESSENTIAL_CONTAINER_EXITED = "essential_container_exited"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Outcome:
    """What one ECS event says about the task: our state, and for a finished task how and why."""

    state: TaskState
    reason: str | None = None
    exit_code: int | None = None
    failure: Failure | None = None
    # True when a new ECS task might succeed where this one did not (the Airflow container never ran).
    infrastructure_failure: bool = False


_SPOT_STOP_CODES = frozenset({"SpotInterruption", "TerminationNotice"})
_NOT_YET_RUNNING = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})


def find_container(containers: list[Container], name: str) -> Container | None:
    """Return the Airflow container by name; a single unnamed-match container is taken as it."""
    for container in containers:
        if container.name == name:
            return container
    return containers[0] if len(containers) == 1 and not containers[0].name else None


def map_ecs_task(
    *,
    last_status: str,
    desired_status: str | None,
    stop_code: str | None,
    stopped_reason: str | None,
    containers: list[Container],
    started_at: datetime | None,
    container_name: str,
) -> Outcome:
    """Map one ECS task snapshot to our task state.

    Only the Airflow container's exit code decides success. An exit code already known on the way down
    (STOPPING, DEPROVISIONING) finishes the task there: a container with an exit code has stopped. A Spot
    interruption warning (RUNNING, desired STOPPED) is not terminal: the task keeps running until ECS stops it.
    """
    container = find_container(containers, container_name)
    exit_code = container.exit_code if container else None
    started = started_at is not None
    spot = stop_code in _SPOT_STOP_CODES

    if exit_code is not None and (
        last_status == "STOPPED" or last_status in ("DEACTIVATING", "STOPPING", "DEPROVISIONING")
    ):
        return _by_exit_code(exit_code, stop_code, stopped_reason, container.reason if container else None)

    if last_status in _NOT_YET_RUNNING:
        return Outcome(TaskState.PENDING)
    if last_status == "RUNNING":
        note = _describe(stop_code, stopped_reason) if desired_status == "STOPPED" else None
        return Outcome(TaskState.RUNNING, reason=f"stopping: {note}" if note else None)
    if last_status != "STOPPED":
        # DEACTIVATING / STOPPING / DEPROVISIONING without an exit code yet: still on its way down.
        return Outcome(TaskState.RUNNING if started else TaskState.PENDING)

    # STOPPED, and the Airflow container left no exit code.
    detail = _describe(stop_code, stopped_reason, container.reason if container else None)
    if stop_code == "TaskFailedToStart":
        return Outcome(
            TaskState.FAILED,
            reason=f"ECS could not start the task: {detail}",
            failure=Failure.FAILED_TO_START,
            infrastructure_failure=True,
        )
    if spot:
        return Outcome(
            TaskState.FAILED,
            reason=f"Spot capacity was reclaimed {'while the task ran' if started else 'before the task started'}: {detail}",
            failure=Failure.SPOT_INTERRUPTION,
            # An Airflow 3 worker that already ran owns its task instance's state; a second worker could not
            # claim it, so only a task that never started is relaunched. Airflow's own retries cover the rest.
            infrastructure_failure=not started,
        )
    if stop_code == "UserInitiated":
        return Outcome(
            TaskState.FAILED,
            reason=f"the task was stopped by a user or API call: {detail}",
            failure=Failure.USER_STOPPED,
        )
    if stop_code == "EssentialContainerExited":
        return Outcome(
            TaskState.FAILED,
            reason=f"an essential container exited before the Airflow container finished: {detail}",
            failure=Failure.ESSENTIAL_CONTAINER_EXITED,
        )
    if not started:
        return Outcome(
            TaskState.FAILED,
            reason=f"the task stopped before it started: {detail}",
            failure=Failure.STOPPED_BEFORE_START,
            infrastructure_failure=True,
        )
    return Outcome(
        TaskState.FAILED, reason=f"the task stopped without an exit code: {detail}", failure=Failure.STOPPED
    )


def map_event(detail: TaskDetail, container_name: str) -> Outcome:
    """Map an event's detail (see map_ecs_task)."""
    return map_ecs_task(
        last_status=detail.last_status,
        desired_status=detail.desired_status,
        stop_code=detail.stop_code,
        stopped_reason=detail.stopped_reason,
        containers=detail.containers,
        started_at=detail.started_at,
        container_name=container_name,
    )


def _by_exit_code(
    exit_code: int, stop_code: str | None, stopped_reason: str | None, container_reason: str | None
) -> Outcome:
    if exit_code == 0:
        return Outcome(TaskState.SUCCEEDED, exit_code=0)
    detail = _describe(stop_code, stopped_reason)
    # The container's own reason (OutOfMemoryError for 137) says more than the task's "Essential container in
    # task exited", so it comes first: a reason cut to the item's size budget keeps it.
    own = f": {container_reason}" if container_reason else ""
    return Outcome(
        TaskState.FAILED,
        reason=f"the Airflow container exited with code {exit_code}{own}"
        + (f" ({detail})" if detail != "no reason given" else ""),
        exit_code=exit_code,
        failure=Failure.EXIT_CODE,
    )


def _describe(stop_code: str | None, stopped_reason: str | None, container_reason: str | None = None) -> str:
    """Join what ECS says about a stop, with the Airflow container's own reason (CannotPullContainerError,
    ResourceInitializationError, OutOfMemoryError...) unless the task's ``stoppedReason`` already quotes it."""
    parts = [p for p in (stop_code, stopped_reason) if p]
    if container_reason and not (stopped_reason and container_reason in stopped_reason):
        parts.append(container_reason)
    return " - ".join(parts) if parts else "no reason given"
