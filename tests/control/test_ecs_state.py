"""The ECS → state mapping, one outcome per test, plus the real events from the AWS documentation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from ecs_event_executor.control.ecs_state import (
    STARTED_BY,
    Container,
    Failure,
    Outcome,
    TaskStateChange,
    is_status_event,
    map_ecs_task,
    map_event,
    status_event_filter,
)
from ecs_event_executor.control.tasks.lifecycle import TaskState
from moto.events.models import EventPattern

# Events copied from the AWS documentation (sources: tests/fixtures/ecs_events/SOURCES.md).
EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "ecs_events"
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


def outcome(
    last: str,
    desired: str = "RUNNING",
    *,
    stop_code: str | None = None,
    reason: str | None = None,
    exit_code: int | None = None,
    started: bool = True,
    containers: list[Container] | None = None,
) -> Outcome:
    if containers is None:
        containers = [Container(name="base", exitCode=exit_code)]
    return map_ecs_task(
        last_status=last,
        desired_status=desired,
        stop_code=stop_code,
        stopped_reason=reason,
        containers=containers,
        started_at=STARTED if started else None,
        container_name="base",
    )


@pytest.mark.parametrize("last", ["PROVISIONING", "PENDING", "ACTIVATING"])
def test_not_yet_running_is_pending(last: str) -> None:
    assert outcome(last, started=False).state is TaskState.PENDING


def test_running_is_running() -> None:
    result = outcome("RUNNING")
    assert result.state is TaskState.RUNNING
    assert result.reason is None


def test_exit_zero_succeeds() -> None:
    result = outcome("STOPPED", "STOPPED", stop_code="EssentialContainerExited", exit_code=0)
    assert (result.state, result.exit_code, result.failure) == (TaskState.SUCCEEDED, 0, None)


def test_nonzero_exit_fails_with_code_and_is_not_relaunched() -> None:
    result = outcome(
        "STOPPED",
        "STOPPED",
        stop_code="EssentialContainerExited",
        reason="Essential container in task exited",
        exit_code=1,
    )
    assert result.state is TaskState.FAILED
    assert result.exit_code == 1
    assert result.failure is Failure.EXIT_CODE
    assert not result.infrastructure_failure
    assert "exited with code 1" in (result.reason or "")


def test_exit_code_at_deprovisioning_finishes_early() -> None:
    assert outcome("DEPROVISIONING", "STOPPED", exit_code=0).state is TaskState.SUCCEEDED
    assert outcome("DEPROVISIONING", "STOPPED", exit_code=3).state is TaskState.FAILED


def test_deprovisioning_without_exit_code_is_not_terminal() -> None:
    assert outcome("DEPROVISIONING", "STOPPED").state is TaskState.RUNNING
    assert outcome("DEPROVISIONING", "STOPPED", started=False).state is TaskState.PENDING


def test_task_failed_to_start_is_an_infrastructure_failure() -> None:
    result = outcome(
        "STOPPED",
        "STOPPED",
        stop_code="TaskFailedToStart",
        reason="CannotPullContainerError: pull access denied",
        started=False,
    )
    assert result.state is TaskState.FAILED
    assert result.failure is Failure.FAILED_TO_START
    assert result.infrastructure_failure
    assert "CannotPullContainerError" in (result.reason or "")


def test_stopped_without_ever_starting_is_relaunchable() -> None:
    result = outcome(
        "STOPPED", "STOPPED", reason="Timeout waiting for network interface provisioning", started=False
    )
    assert result.failure is Failure.STOPPED_BEFORE_START
    assert result.infrastructure_failure
    assert "before it started" in (result.reason or "")


def test_user_initiated_stop_fails_with_reason() -> None:
    result = outcome(
        "STOPPED", "STOPPED", stop_code="UserInitiated", reason="revoked by the Airflow executor"
    )
    assert result.state is TaskState.FAILED
    assert result.failure is Failure.USER_STOPPED
    assert not result.infrastructure_failure
    assert "revoked by the Airflow executor" in (result.reason or "")


def test_essential_sidecar_exit_fails_the_task() -> None:
    result = outcome(
        "STOPPED",
        "STOPPED",
        stop_code="EssentialContainerExited",
        reason="Essential container in task exited",
        containers=[Container(name="base"), Container(name="log-router", exitCode=1)],
    )
    assert result.failure is Failure.ESSENTIAL_CONTAINER_EXITED
    assert "essential container" in (result.reason or "")


@pytest.mark.parametrize("code", ["SpotInterruption", "TerminationNotice"])
def test_spot_warning_is_not_terminal(code: str) -> None:
    result = outcome("RUNNING", "STOPPED", stop_code=code, reason="Your Spot Task was interrupted.")
    assert result.state is TaskState.RUNNING
    assert "Spot" in (result.reason or "")


def test_spot_stop_after_start_fails_without_relaunch() -> None:
    result = outcome(
        "STOPPED", "STOPPED", stop_code="SpotInterruption", reason="Your Spot Task was interrupted."
    )
    assert result.failure is Failure.SPOT_INTERRUPTION
    assert not result.infrastructure_failure


def test_spot_stop_before_start_is_relaunchable() -> None:
    result = outcome(
        "STOPPED",
        "STOPPED",
        stop_code="SpotInterruption",
        reason="Your Spot Task was interrupted.",
        started=False,
    )
    assert result.failure is Failure.SPOT_INTERRUPTION
    assert result.infrastructure_failure


def test_sidecar_exit_code_never_decides() -> None:
    containers = [Container(name="xray", exitCode=0), Container(name="base", exitCode=2)]
    assert outcome("STOPPED", "STOPPED", containers=containers).state is TaskState.FAILED
    containers = [Container(name="xray", exitCode=1), Container(name="base", exitCode=0)]
    assert outcome("STOPPED", "STOPPED", containers=containers).state is TaskState.SUCCEEDED


def test_stopped_after_start_without_exit_code_fails() -> None:
    result = outcome("STOPPED", "STOPPED", reason="Task stopped by scheduler")
    assert result.failure is Failure.STOPPED
    assert not result.infrastructure_failure


def _load(name: str) -> TaskStateChange:
    return TaskStateChange.model_validate(json.loads((EVENTS / name).read_text()))


def test_documented_fargate_running_event() -> None:
    event = _load("fargate_task_running.json")
    assert event.detail.version == 4
    assert map_event(event.detail, "FargateApp").state is TaskState.RUNNING


def test_documented_sidecar_stop_keeps_the_task_running() -> None:
    # A sidecar (xray) stopped with exit code 0 while the task runs: not the Airflow container, not finished.
    event = _load("ec2_task_running_sidecar_stopped.json")
    assert map_event(event.detail, "base").state is TaskState.RUNNING
    assert map_event(event.detail, "xray").state is TaskState.RUNNING


def test_documented_spot_warning_is_not_terminal() -> None:
    event = _load("spot_interruption_warning_termination_notice_partial.json")
    result = map_event(event.detail, "base")
    assert result.state is TaskState.RUNNING
    assert "TerminationNotice" in (result.reason or "")


def _stopping(*, exit_code: int | None, stop_code: str, reason: str) -> TaskStateChange:
    """Return the documented Fargate event moved on to STOPPING, as ECS sends it when the task is being stopped.

    The guide documents each step by the same shape: ``lastStatus`` STOPPING, ``desiredStatus`` STOPPED, the
    ``stopCode``, ``stoppedReason`` and ``stoppingAt``, a newer ``version``; a container that has exited is STOPPED
    with its ``exitCode``.
    """
    raw = json.loads((EVENTS / "fargate_task_running.json").read_text())
    detail = raw["detail"]
    detail.update(
        lastStatus="STOPPING",
        desiredStatus="STOPPED",
        stopCode=stop_code,
        stoppedReason=reason,
        stoppingAt="2020-01-23T18:03:12.410Z",
        version=5,
    )
    if exit_code is not None:
        detail["containers"][0].update(lastStatus="STOPPED", exitCode=exit_code)
    return TaskStateChange.model_validate(raw)


@pytest.mark.parametrize(("code", "state"), [(0, TaskState.SUCCEEDED), (2, TaskState.FAILED)])
def test_documented_stopping_with_the_exit_code_finishes_the_task(code: int, state: TaskState) -> None:
    event = _stopping(
        exit_code=code, stop_code="EssentialContainerExited", reason="Essential container in task exited"
    )
    result = map_event(event.detail, "FargateApp")
    assert (result.state, result.exit_code) == (state, code)
    assert not result.infrastructure_failure


def test_documented_stopping_without_the_exit_code_waits_for_stopped() -> None:
    event = _stopping(exit_code=None, stop_code="UserInitiated", reason="Task stopped by user")
    assert map_event(event.detail, "FargateApp").state is TaskState.RUNNING


# The Airflow container's own ``reason`` as the Amazon ECS Developer Guide documents it ("Amazon ECS stopped task
# error messages"; sources: tests/fixtures/ecs_events/SOURCES.md). ECS puts it on the container, not in the task's
# ``stoppedReason``, for a container killed by the kernel's OOM killer.
OOM = "OutOfMemoryError: Container killed due to memory usage"
PULL = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
    "docker.io/library/airflow:missing: not found"
)
INIT = (
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: "
    "unable to retrieve secret from asm: service call has been retried 1 time(s)"
)


def _stopped(*, exit_code: int | None, stop_code: str, reason: str, container_reason: str) -> TaskStateChange:
    """Return the documented Fargate event moved on to STOPPED, the container carrying its own ``reason``."""
    raw = json.loads((EVENTS / "fargate_task_running.json").read_text())
    detail = raw["detail"]
    detail.update(
        lastStatus="STOPPED",
        desiredStatus="STOPPED",
        stopCode=stop_code,
        stoppedReason=reason,
        stoppedAt="2020-01-23T18:03:26.410Z",
        version=6,
    )
    if stop_code == "TaskFailedToStart":
        del detail["startedAt"]
    detail["containers"][0].update(lastStatus="STOPPED", reason=container_reason)
    if exit_code is not None:
        detail["containers"][0]["exitCode"] = exit_code
    return TaskStateChange.model_validate(raw)


def test_documented_out_of_memory_names_the_container_reason() -> None:
    event = _stopped(
        exit_code=137,
        stop_code="EssentialContainerExited",
        reason="Essential container in task exited",
        container_reason=OOM,
    )
    result = map_event(event.detail, "FargateApp")
    assert result.state is TaskState.FAILED
    assert result.reason == (
        f"the Airflow container exited with code 137: {OOM} "
        "(EssentialContainerExited - Essential container in task exited)"
    )


@pytest.mark.parametrize("container_reason", [PULL, INIT])
def test_documented_failed_start_names_the_container_reason(container_reason: str) -> None:
    event = _stopped(
        exit_code=None,
        stop_code="TaskFailedToStart",
        reason="Task failed to start",
        container_reason=container_reason,
    )
    result = map_event(event.detail, "FargateApp")
    assert (result.state, result.failure) == (TaskState.FAILED, Failure.FAILED_TO_START)
    assert (
        result.reason
        == f"ECS could not start the task: TaskFailedToStart - Task failed to start - {container_reason}"
    )


def test_container_reason_already_in_the_stopped_reason_is_not_repeated() -> None:
    event = _stopped(exit_code=None, stop_code="TaskFailedToStart", reason=PULL, container_reason=PULL)
    assert (
        map_event(event.detail, "FargateApp").reason
        == f"ECS could not start the task: TaskFailedToStart - {PULL}"
    )


def test_a_sidecar_reason_is_not_the_airflow_container_reason() -> None:
    containers = [Container(name="base", exitCode=1), Container(name="proxy", exitCode=137, reason=OOM)]
    result = outcome("STOPPED", "STOPPED", stop_code="EssentialContainerExited", containers=containers)
    assert OOM not in (result.reason or "")


# ---------------------------------------------------------------------------------------- the rule's pattern


def rule_pattern(cluster_arn: str) -> EventPattern:
    """Return the ECS rule's pattern (infra/status.py builds the same; tests/infra asserts the template's) in
    moto's implementation of EventBridge's pattern matching."""
    pattern = {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": [cluster_arn], "startedBy": [STARTED_BY], **status_event_filter()},
    }
    return EventPattern.load(json.dumps(pattern))


def doc_event(name: str, **detail: Any) -> dict[str, Any]:
    """Return a documentation event, started by this control plane, with ``detail`` fields replaced."""
    event = json.loads((EVENTS / name).read_text())
    event["detail"] |= {"startedBy": STARTED_BY, **detail}
    return cast(dict[str, Any], event)


@pytest.mark.parametrize(
    ("name", "detail", "delivered"),
    [
        ("fargate_task_running.json", {}, False),  # plain RUNNING: Airflow hears it from the worker
        ("ec2_task_running_sidecar_stopped.json", {}, False),
        ("spot_interruption_warning_termination_notice_partial.json", {}, True),  # RUNNING, desired STOPPED
        ("fargate_task_running.json", {"lastStatus": "STOPPING", "desiredStatus": "STOPPED"}, True),
        ("fargate_task_running.json", {"lastStatus": "STOPPED", "desiredStatus": "STOPPED"}, True),
        # A Fargate task's STOPPED after its essential container's exit: that exit came with STOPPING.
        (
            "fargate_task_running.json",
            {"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited"},
            False,
        ),
        # Every other STOPPED is the final word: StopTask, Spot, a failed start; a task on EC2 (the documentation's
        # EC2 events name no launch type; its agent may report RUNNING -> STOPPED).
        ("fargate_task_running.json", {"lastStatus": "STOPPED", "stopCode": "UserInitiated"}, True),
        ("fargate_task_running.json", {"lastStatus": "STOPPED", "stopCode": "SpotInterruption"}, True),
        ("fargate_task_running.json", {"lastStatus": "STOPPED", "stopCode": "TaskFailedToStart"}, True),
        (
            "ec2_task_running_sidecar_stopped.json",
            {"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited"},
            True,
        ),
        (
            "fargate_task_running.json",
            {"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited", "launchType": "EC2"},
            True,
        ),
        ("fargate_task_running.json", {"lastStatus": "DEPROVISIONING", "desiredStatus": "STOPPED"}, False),
        ("fargate_task_running.json", {"lastStatus": "PENDING"}, False),
        ("fargate_task_running.json", {"lastStatus": "STOPPED", "startedBy": "someone-else"}, False),
    ],
)
def test_the_rule_delivers_only_the_steps_that_can_end_a_task(
    name: str, detail: dict[str, Any], delivered: bool
) -> None:
    event = doc_event(name, **detail)
    cluster = event["detail"]["clusterArn"]
    assert rule_pattern(cluster).matches_event(cast(Any, event)) is delivered
    if event["detail"]["startedBy"] == STARTED_BY:  # the pure test the harnesses use says the same
        assert is_status_event(event["detail"]) is delivered
    # Another cluster's task is never delivered.
    assert not rule_pattern(cluster + "-other").matches_event(cast(Any, event))
