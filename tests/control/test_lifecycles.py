"""200 full task lifecycles with events shuffled and duplicated end in the right states."""

from __future__ import annotations

import random
from typing import Any

from ecs_event_executor.control.task_item import TaskState, TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import LambdaContextStub, body_event
from tests.support.ecs_events import task_event
from tests.support.requests import launch_request

SCENARIOS = ["exit0", "exit1", "failed_to_start", "user_stopped", "spot"]


def lifecycle(task: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    """Return the events ECS would send for one task, in order (versions increase)."""
    start = [
        task_event(task, last_status=s, version=v) for v, s in enumerate(["PROVISIONING", "PENDING"], start=1)
    ]
    if scenario == "failed_to_start":
        return [
            *start,
            task_event(
                task,
                last_status="STOPPED",
                version=3,
                stop_code="TaskFailedToStart",
                stopped_reason="CannotPullContainerError",
                started=False,
            ),
        ]
    running = task_event(task, last_status="RUNNING", version=3)
    if scenario in ("exit0", "exit1"):
        code = 0 if scenario == "exit0" else 1
        return [
            *start,
            running,
            task_event(
                task,
                last_status="DEPROVISIONING",
                version=4,
                exit_code=code,
                stop_code="EssentialContainerExited",
            ),
            task_event(
                task, last_status="STOPPED", version=5, exit_code=code, stop_code="EssentialContainerExited"
            ),
        ]
    if scenario == "user_stopped":
        return [
            *start,
            running,
            task_event(
                task,
                last_status="STOPPED",
                version=4,
                stop_code="UserInitiated",
                stopped_reason="stopped by operator",
            ),
        ]
    warning = task_event(
        task,
        last_status="RUNNING",
        desired_status="STOPPED",
        version=4,
        stop_code="SpotInterruption",
        stopped_reason="Your Spot Task was interrupted.",
    )
    return [
        *start,
        running,
        warning,
        task_event(
            task,
            last_status="STOPPED",
            version=5,
            stop_code="SpotInterruption",
            stopped_reason="Your Spot Task was interrupted.",
        ),
    ]


EXPECTED = {
    "exit0": (TaskState.SUCCEEDED, 0, None),
    "exit1": (TaskState.FAILED, 1, "exited with code 1"),
    "failed_to_start": (TaskState.FAILED, None, "CannotPullContainerError"),
    "user_stopped": (TaskState.FAILED, None, "stopped by operator"),
    "spot": (TaskState.FAILED, None, "Spot capacity was reclaimed while the task ran"),
}


def test_two_hundred_lifecycles_shuffled_and_duplicated(control_plane: ControlPlane) -> None:
    rng = random.Random(20261125)
    requests = [launch_request(f"task_{i}", max_attempts=1) for i in range(200)]
    for start in range(0, len(requests), 10):
        batch = [r.to_json() for r in requests[start : start + 10]]
        assert launcher_handler.handler(body_event(batch, control_plane.queue_arn), LambdaContextStub()) == {
            "batchItemFailures": []
        }
    table = TaskTable(control_plane.table)
    items = table.get_many(r.launch_id for r in requests)
    ecs = control_plane.client("ecs")
    arns = [items[r.launch_id].task_arn for r in requests]
    tasks = {
        t["taskArn"]: t
        for i in range(0, 200, 100)
        for t in ecs.describe_tasks(cluster=control_plane.ecs.cluster, tasks=arns[i : i + 100])["tasks"]
    }
    scenario_of = {r.launch_id: SCENARIOS[i % len(SCENARIOS)] for i, r in enumerate(requests)}

    events = []
    for request in requests:
        for event in lifecycle(tasks[items[request.launch_id].task_arn], scenario_of[request.launch_id]):
            events.extend([event] * rng.randint(1, 3))
    rng.shuffle(events)
    for event in events:
        status_handler.handler(event, LambdaContextStub())

    final = table.get_many(r.launch_id for r in requests)
    wrong = []
    for launch_id, scenario in scenario_of.items():
        state, exit_code, reason_part = EXPECTED[scenario]
        item = final[launch_id]
        if (
            item.state is not state
            or item.exit_code != exit_code
            or (reason_part and reason_part not in (item.reason or ""))
        ):
            wrong.append((scenario, item.state, item.exit_code, item.reason))
    assert wrong == []
    assert len(events) > 1000
    assert {s: sum(1 for v in scenario_of.values() if v == s) for s in SCENARIOS} == dict.fromkeys(
        SCENARIOS, 40
    )
