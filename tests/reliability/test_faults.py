"""Fault injection: duplicated deliveries and crashes, shuffled and dropped events, throttling, capacity."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from ecs_event_executor.control.ecs_state import LAUNCH_ID_ENV
from ecs_event_executor.control.launching import Launcher, LauncherSettings, RetryLater
from ecs_event_executor.control.messages import LaunchRequest, TaskKey, new_launch_id
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import CallCounter, ClientTokenSemantics, LambdaContextStub, body_event
from tests.support.ecs_world import SCENARIOS, EcsWorld
from tests.support.requests import launch_request, workload_command

pytestmark = pytest.mark.reliability

EXPECTED: dict[str, tuple[TaskState, int | None, str | None]] = {
    "exit0": (TaskState.SUCCEEDED, 0, None),
    "exit1": (TaskState.FAILED, 1, "exited with code 1"),
    "failed_to_start": (TaskState.FAILED, None, "CannotPullContainerError"),
    "user_stopped": (TaskState.FAILED, None, "stopped by operator"),
    "spot": (TaskState.FAILED, None, "Spot capacity was reclaimed while the task ran"),
}


@pytest.fixture(autouse=True)
def quiet_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Thousands of invocations: keep the handlers' structured logs out of the captured output.
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    launcher_handler.logger.setLevel("WARNING")
    status_handler.logger.setLevel("WARNING")


def ecs_tasks_by_launch(cp: ControlPlane) -> Counter[str]:
    """Count the ECS tasks moto holds for each launch id (read from the container override environment)."""
    ecs = cp.client("ecs")
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cp.ecs.cluster):
        arns.extend(page["taskArns"])
    counts: Counter[str] = Counter()
    for start in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=cp.ecs.cluster, tasks=arns[start : start + 100])["tasks"]:
            env = {
                kv["name"]: kv["value"]
                for o in task["overrides"]["containerOverrides"]
                for kv in o.get("environment", [])
            }
            counts[env[LAUNCH_ID_ENV]] += 1
    return counts


def launch_all(cp: ControlPlane, requests: list[LaunchRequest]) -> dict[str, TaskItem]:
    for start in range(0, len(requests), 10):
        batch = [r.to_json() for r in requests[start : start + 10]]
        assert launcher_handler.handler(body_event(batch, cp.queue_arn), LambdaContextStub()) == {
            "batchItemFailures": []
        }
    return TaskTable(cp.table).get_many(r.launch_id for r in requests)


def world_of(
    cp: ControlPlane, items: dict[str, TaskItem], scenario_of: Callable[[int], str]
) -> tuple[EcsWorld, dict[str, str]]:
    world = EcsWorld()
    arns = [item.task_arn for item in items.values() if item.task_arn]
    ecs = cp.client("ecs")
    expected: dict[str, str] = {}
    by_arn = {item.task_arn: item.launch_id for item in items.values()}
    tasks = [
        t
        for s in range(0, len(arns), 100)
        for t in ecs.describe_tasks(cluster=cp.ecs.cluster, tasks=arns[s : s + 100])["tasks"]
    ]
    for i, task in enumerate(sorted(tasks, key=lambda t: t["taskArn"])):
        scenario = scenario_of(i)
        world.add(task, scenario)
        expected[by_arn[task["taskArn"]]] = scenario
    return world, expected


def wrong_states(cp: ControlPlane, expected: dict[str, str]) -> list[tuple[str, str, str | None]]:
    final = TaskTable(cp.table).get_many(expected)
    wrong = []
    for launch_id, scenario in expected.items():
        state, exit_code, reason = EXPECTED[scenario]
        item = final[launch_id]
        if (
            item.state is not state
            or item.exit_code != exit_code
            or (reason and reason not in (item.reason or ""))
        ):
            wrong.append((scenario, item.state.value, item.reason))
    return wrong


def test_r1_duplicate_deliveries_and_crashes_start_no_duplicate_task(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 500
    rng = random.Random(1)
    now = [time.time()]
    table = TaskTable(control_plane.table, clock=lambda: now[0])
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=lambda: now[0])
    ClientTokenSemantics().attach(launcher.ecs)
    runs = CallCounter().attach(launcher.ecs)
    launcher_handler._launcher = launcher
    requests = [launch_request(f"t{i}", deadline_in=None) for i in range(n)]
    crash_before_record = {r.launch_id for r in rng.sample(requests, n // 10)}
    original = table.record_launched

    def record_or_crash(launch_id: str, attempt: int, **kwargs: Any) -> tuple[bool, TaskItem | None]:
        if launch_id in crash_before_record:
            crash_before_record.discard(launch_id)
            raise RuntimeError("Lambda crashed between RunTask and recording the task")
        return original(launch_id, attempt, **kwargs)

    table.record_launched = record_or_crash  # type: ignore[method-assign]
    # Every message is delivered twice, the copies in different batches and orders.
    deliveries = [r.to_json() for r in requests] * 2
    rng.shuffle(deliveries)
    for start in range(0, len(deliveries), 10):
        launcher_handler.handler(
            body_event(deliveries[start : start + 10], control_plane.queue_arn), LambdaContextStub()
        )
    # Crashed invocations' messages come back after the visibility timeout, once the launch lease has expired;
    # a tenth of all messages is also redelivered after a crash between recording and the SQS delete.
    now[0] += LauncherSettings.from_env().lease_seconds + 1
    again = [r.to_json() for r in requests if table.get(r.launch_id).task_arn is None]  # type: ignore[union-attr]
    again += [r.to_json() for r in rng.sample(requests, n // 10)]
    for start in range(0, len(again), 10):
        launcher_handler.handler(
            body_event(again[start : start + 10], control_plane.queue_arn, receive_count=3),
            LambdaContextStub(),
        )

    counts = ecs_tasks_by_launch(control_plane)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    figure(
        f"R1 duplicate tasks: {duplicates} of {n} launches ({runs.calls['RunTask']} RunTask calls for {len(deliveries) + len(again)} deliveries)"
    )
    assert duplicates == 0
    assert len(counts) == n
    assert all(
        item.state is TaskState.PENDING for item in table.get_many(r.launch_id for r in requests).values()
    )


def test_r2_shuffled_and_duplicated_events_end_in_the_right_state(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 500
    rng = random.Random(2)
    items = launch_all(control_plane, [launch_request(f"t{i}", max_attempts=1) for i in range(n)])
    names = list(SCENARIOS)
    world, expected = world_of(control_plane, items, lambda i: names[i % len(names)])
    events = []
    for arn in world.tasks:
        for event in world.run_to_end(arn):
            events.extend([event] * rng.randint(1, 3))
    rng.shuffle(events)
    for event in events:
        status_handler.handler(event, LambdaContextStub())
    wrong = wrong_states(control_plane, expected)
    figure(
        f"R2 right final state: {n - len(wrong)} of {n} tasks ({len(events)} events, shuffled, up to 3x duplicated)"
    )
    assert wrong == []


def test_r3_dropped_events_are_recovered_by_the_reconciler(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 500
    rng = random.Random(3)
    items = launch_all(control_plane, [launch_request(f"t{i}", max_attempts=1) for i in range(n)])
    names = list(SCENARIOS)
    world, expected = world_of(control_plane, items, lambda i: names[i % len(names)])
    dropped = delivered = 0
    for arn in world.tasks:
        for event in world.run_to_end(arn):
            if rng.random() < 0.2:
                dropped += 1
                continue
            delivered += 1
            status_handler.handler(event, LambdaContextStub())
    before = len(wrong_states(control_plane, expected))
    later = lambda: time.time() + 3600  # noqa: E731
    reconciler = Reconciler(
        ReconcilerSettings.from_env(dict(control_plane.env, STALE_AFTER_SECONDS="600")),
        table=TaskTable(control_plane.table, clock=later),
        clock=later,
    )
    world.attach(reconciler.ecs)
    report = reconciler.run()
    wrong = wrong_states(control_plane, expected)
    figure(
        f"R3 converged after dropping 20% of events: {n - len(wrong)} of {n} tasks "
        f"({dropped} of {dropped + delivered} events dropped; {before} wrong before reconciling; "
        f"{report.describe_calls} DescribeTasks calls for {report.checked} stale items)"
    )
    assert before > 0
    assert wrong == []


def test_r4_throttling_and_capacity_never_fail_a_task(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 200
    horizon = 600.0  # [scheduler] task_queued_timeout: the workload can start until then
    rng = random.Random(4)
    start = time.time()
    sim = [start]
    table = TaskTable(control_plane.table, clock=lambda: sim[0])
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=lambda: sim[0])
    launcher_handler._launcher = launcher
    injected = Counter[str]()

    def flaky_aws(**_: Any) -> Any:
        roll = rng.random()
        if roll < 0.5:
            injected["throttled"] += 1
            error = {
                "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), error
        if roll < 0.6:
            injected["capacity"] += 1
            failure = {
                "reason": "Capacity is unavailable at this time. Please try again later or in a different availability zone"
            }
            return AWSResponse("https://ecs.amazonaws.com/", 200, {}, None), {
                "tasks": [],
                "failures": [failure],
            }
        return None

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", flaky_aws)
    queued = datetime.fromtimestamp(start, UTC)
    requests = []
    for i in range(n):
        key = TaskKey(dag_id="burst", task_id=f"t{i}", run_id="r", try_number=1)
        requests.append(
            LaunchRequest(
                launch_id=new_launch_id(key),
                owner="o",
                key=key,
                command=workload_command(key),
                queued_at=queued,
                launch_deadline=queued + timedelta(seconds=horizon),
            )
        )
    # The queue: (visible at, receive count, body). Retried messages come back after the launcher's backoff.
    pending = [(start, 1, r.to_json()) for r in requests]
    retries = 0
    while pending:
        pending.sort()
        sim[0] = max(sim[0], pending[0][0])
        batch = [p for p in pending if p[0] <= sim[0]][:10]
        pending = [p for p in pending if p not in batch]
        for _visible_at, count, body in batch:
            try:
                launcher.handle(body, receive_count=count)
            except RetryLater as retry:  # back to the queue after the launcher's backoff
                retries += 1
                pending.append((sim[0] + retry.delay_seconds, count + 1, body))
        sim[0] += 0.2  # one batch takes a moment
    final = table.get_many(r.launch_id for r in requests)
    launched = [i for i in final.values() if i.state is TaskState.PENDING]
    failed = [i for i in final.values() if i.state is TaskState.FAILED]
    latest = max(i.launched_at or 0 for i in final.values()) / 1000 - start
    figure(
        f"R4 launched within the horizon: {len(launched)} of {n}, failed {len(failed)} "
        f"({injected['throttled']} throttled and {injected['capacity']} capacity failures injected; "
        f"{retries} retries; last launch at {latest:.0f} s of {horizon:.0f} s)"
    )
    assert len(launched) == n and not failed
    assert latest < horizon
    assert injected["throttled"] > n // 2
