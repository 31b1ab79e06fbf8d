"""Play ECS in tests: the true lifecycle of each task, the events it emits, and what DescribeTasks answers.

moto keeps every task RUNNING until StopTask and sends no events. ``EcsWorld`` holds each task's real progress,
builds its events in the documented shape, and rewrites moto's DescribeTasks answers (at the botocore level) to
match — including ``stoppedAt`` (on the world's clock, so tests can simulate hours) and forgetting stopped tasks,
as ECS does after about an hour. It answers ListTasks for its tasks as ECS does: by cluster, ``startedBy`` and
``desiredStatus`` (a task ECS forgot is not listed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.awsrequest import AWSResponse

from tests.support.ecs_events import task_event

# Each scenario's steps: (lastStatus, desiredStatus, stopCode, stoppedReason, exit code, started).
Step = tuple[str, str, str | None, str | None, int | None, bool]
SCENARIOS: dict[str, list[Step]] = {
    # Fargate: the essential Airflow container exits; STOPPING carries its exit code (the rule delivers STOPPING, not
    # this STOPPED: see ecs_state).
    "exit0": [
        ("PROVISIONING", "RUNNING", None, None, None, False),
        ("PENDING", "RUNNING", None, None, None, False),
        ("RUNNING", "RUNNING", None, None, None, True),
        (
            "STOPPING",
            "STOPPED",
            "EssentialContainerExited",
            "Essential container in task exited",
            0,
            True,
        ),
        ("STOPPED", "STOPPED", "EssentialContainerExited", "Essential container in task exited", 0, True),
    ],
    # EC2 (its events name no launch type, as in the documentation's): the agent reports RUNNING -> STOPPED.
    "exit1": [
        ("PROVISIONING", "RUNNING", None, None, None, False),
        ("PENDING", "RUNNING", None, None, None, False),
        ("RUNNING", "RUNNING", None, None, None, True),
        ("STOPPED", "STOPPED", "EssentialContainerExited", "Essential container in task exited", 1, True),
    ],
    "failed_to_start": [
        ("PROVISIONING", "RUNNING", None, None, None, False),
        (
            "STOPPED",
            "STOPPED",
            "TaskFailedToStart",
            "CannotPullContainerError: pull access denied",
            None,
            False,
        ),
    ],
    "user_stopped": [
        ("PENDING", "RUNNING", None, None, None, False),
        ("RUNNING", "RUNNING", None, None, None, True),
        ("STOPPED", "STOPPED", "UserInitiated", "stopped by operator", None, True),
    ],
    # A non-essential sidecar exits 1 while the Airflow container runs on and exits 0.
    "sidecar_exit": [
        ("PENDING", "RUNNING", None, None, None, False),
        ("RUNNING", "RUNNING", None, None, None, True),
        ("RUNNING", "RUNNING", None, None, None, True),
        (
            "STOPPING",
            "STOPPED",
            "EssentialContainerExited",
            "Essential container in task exited",
            0,
            True,
        ),
        ("STOPPED", "STOPPED", "EssentialContainerExited", "Essential container in task exited", 0, True),
    ],
    # Fargate: an essential sidecar exits first; ECS stops the Airflow container (143). Its STOPPING has no Airflow
    # exit code and its STOPPED is not delivered: the reconciler's next pass finishes it (RECONCILER_FINISHES).
    "essential_sidecar_first": [
        ("PENDING", "RUNNING", None, None, None, False),
        ("RUNNING", "RUNNING", None, None, None, True),
        ("STOPPING", "STOPPED", "EssentialContainerExited", "Essential container in task exited", None, True),
        ("STOPPED", "STOPPED", "EssentialContainerExited", "Essential container in task exited", 143, True),
    ],
    "spot": [
        ("PENDING", "RUNNING", None, None, None, False),
        ("RUNNING", "RUNNING", None, None, None, True),
        ("RUNNING", "STOPPED", "SpotInterruption", "Your Spot Task was interrupted.", None, True),
        ("STOPPED", "STOPPED", "SpotInterruption", "Your Spot Task was interrupted.", None, True),
    ],
}
# Sidecar containers' exit codes (None: running) at each step of a scenario that has sidecars.
SIDECARS: dict[str, list[dict[str, int | None]]] = {
    "sidecar_exit": [
        {"log-router": None},
        {"log-router": None},
        {"log-router": 1},
        {"log-router": 1},
        {"log-router": 1},
    ],
    "essential_sidecar_first": [{"proxy": None}, {"proxy": None}, {"proxy": 1}, {"proxy": 1}],
}
# The events' launch type where it is not the task's own (moto's RunTask: FARGATE); None: the field is absent.
LAUNCH_TYPES: dict[str, str | None] = {"exit1": None}
# Scenarios whose delivered events cannot finish the task: only a reconciler pass that reads ECS can.
RECONCILER_FINISHES = frozenset({"essential_sidecar_first"})


@dataclass
class WorldTask:
    task: dict[str, Any]
    scenario: str
    step: int = -1  # index into the scenario's steps; -1 before the first
    forgotten: bool = False
    stopped_at: float | None = None  # the world's clock when it reached STOPPED

    @property
    def finished(self) -> bool:
        return self.step == len(SCENARIOS[self.scenario]) - 1


@dataclass
class EcsWorld:
    container_name: str = "base"
    tasks: dict[str, WorldTask] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    list_calls: int = 0

    def attach(self, ecs_client: Any) -> EcsWorld:
        ecs_client.meta.events.register("after-call.ecs.DescribeTasks", self._rewrite)
        ecs_client.meta.events.register("before-call.ecs.ListTasks", self._list)
        return self

    def add(self, task: dict[str, Any], scenario: str) -> None:
        self.tasks[task["taskArn"]] = WorldTask(task, scenario)

    def step(self, task_arn: str) -> dict[str, Any]:
        """Advance a task one lifecycle step; return the event ECS sends for it."""
        world = self.tasks[task_arn]
        world.step += 1
        if SCENARIOS[world.scenario][world.step][0] == "STOPPED":
            world.stopped_at = self.clock()
        return self.event(world)

    def run_to_end(self, task_arn: str) -> list[dict[str, Any]]:
        world = self.tasks[task_arn]
        return [self.step(task_arn) for _ in range(len(SCENARIOS[world.scenario]) - 1 - world.step)]

    def event(self, world: WorldTask) -> dict[str, Any]:
        last, desired, stop_code, reason, exit_code, started = SCENARIOS[world.scenario][world.step]
        event = task_event(
            world.task,
            last_status=last,
            desired_status=desired,
            version=world.step + 1,
            container_name=self.container_name,
            exit_code=exit_code,
            stop_code=stop_code,
            stopped_reason=reason,
            started=started,
            sidecars=SIDECARS[world.scenario][world.step] if world.scenario in SIDECARS else None,
        )
        if world.scenario in LAUNCH_TYPES:
            launch_type = LAUNCH_TYPES[world.scenario]
            if launch_type is None:
                event["detail"].pop("launchType", None)
            else:
                event["detail"]["launchType"] = launch_type
        return event

    def forget_stopped(self) -> None:
        """ECS drops stopped tasks from DescribeTasks about an hour after they stop."""
        for world in self.tasks.values():
            if world.finished:
                world.forgotten = True

    def _list(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # ECS speaks JSON: the serialized body is the parameters. One page holds everything (ECS pages by 100;
        # the reconciler pages with botocore's paginator either way).
        request = json.loads(params["body"] or b"{}")
        self.list_calls += 1
        cluster = request.get("cluster", "default").rsplit("/", 1)[-1]
        wanted = request.get("desiredStatus", "RUNNING")
        arns = [
            arn
            for arn, world in self.tasks.items()
            if not world.forgotten
            and world.task.get("clusterArn", "").rsplit("/", 1)[-1] == cluster
            and request.get("startedBy") in (None, world.task.get("startedBy"))
            and (SCENARIOS[world.scenario][world.step][1] if world.step >= 0 else "RUNNING") == wanted
        ]
        return AWSResponse("https://ecs.amazonaws.com/", 200, {}, None), {"taskArns": arns}

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        answered = []
        for task in parsed.get("tasks", []):
            world = self.tasks.get(task["taskArn"])
            if world is None:
                answered.append(task)
                continue
            if world.forgotten:
                parsed.setdefault("failures", []).append({"arn": task["taskArn"], "reason": "MISSING"})
                continue
            if world.step >= 0:
                detail = self.event(world)["detail"]
                task.update(
                    lastStatus=detail["lastStatus"],
                    desiredStatus=detail["desiredStatus"],
                    version=detail["version"],
                    containers=detail["containers"],
                )
                for name in ("stopCode", "stoppedReason"):
                    if name in detail:
                        task[name] = detail[name]
                if "startedAt" in detail:
                    task["startedAt"] = datetime.now(UTC)
                else:
                    task.pop("startedAt", None)
                if world.stopped_at is not None:
                    task["stoppedAt"] = datetime.fromtimestamp(world.stopped_at, UTC)
            answered.append(task)
        parsed["tasks"] = answered
