"""Fault injection: duplicated deliveries and crashes, shuffled and dropped events, throttling, capacity."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from ecs_event_executor.control import bus as bus_events
from ecs_event_executor.control.bus import ControlPlaneBus
from ecs_event_executor.control.ecs_state import LAUNCH_ID_ENV, TaskStateChange, is_status_event
from ecs_event_executor.control.failed_events import FailedEvents
from ecs_event_executor.control.launching import Launcher, LauncherSettings, RetryLater
from ecs_event_executor.control.messages import LaunchRequest, RelaunchRequest
from ecs_event_executor.control.reconciling import Reconciler, ReconcilerSettings
from ecs_event_executor.control.status_tracking import StatusResult, StatusSettings, StatusTracker
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from harness.aws_shapes import lambda_failure_record
from infra.status import ASYNC_RETRY_ATTEMPTS as STATUS_ASYNC_RETRY_ATTEMPTS
from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import (
    CONTAINER,
    REGION,
    CallCounter,
    ClientTokenSemantics,
    LambdaContextStub,
    body_event,
)
from tests.support.ecs_world import RECONCILER_FINISHES, SCENARIOS, EcsWorld
from tests.support.requests import launch_request, requests_for

pytestmark = pytest.mark.reliability

EXPECTED: dict[str, tuple[TaskState, int | None, str | None]] = {
    "exit0": (TaskState.SUCCEEDED, 0, None),
    "exit1": (TaskState.FAILED, 1, "exited with code 1"),
    "failed_to_start": (TaskState.FAILED, None, "CannotPullContainerError"),
    "user_stopped": (TaskState.FAILED, None, "stopped by operator"),
    "spot": (TaskState.FAILED, None, "Spot capacity was reclaimed while the task ran"),
    "sidecar_exit": (TaskState.SUCCEEDED, 0, None),
    "essential_sidecar_first": (TaskState.FAILED, 143, "exited with code 143"),
    # Attempt 1 failed to start, attempt 2 (a new ECS task) exited 0.
    "relaunch": (TaskState.SUCCEEDED, 0, None),
}
# The attempt each scenario ends on.
FINAL_ATTEMPT = {"relaunch": 2}


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
            or item.attempt != FINAL_ATTEMPT.get(scenario, 1)
        ):
            wrong.append((scenario, item.state.value, item.reason))
    return wrong


@dataclass
class R1Result:
    launches: int
    duplicates: int
    tasks: int
    run_task_calls: int
    legitimate_calls: (
        int  # one per launch, plus one per crash between RunTask and recording (same client token)
    )
    deliveries: int
    all_pending: bool

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.tasks == self.launches
            and self.run_task_calls == self.legitimate_calls
            and self.all_pending
        )


def run_r1(cp: ControlPlane, n: int, *, seed: int = 1) -> R1Result:
    """Deliver every launch message twice, crash 10% of launches between RunTask and recording, redeliver 10%
    after recording; return what ECS got."""
    rng = random.Random(seed)
    now = [time.time()]
    table = TaskTable(cp.table, clock=lambda: now[0])
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=lambda: now[0])
    ClientTokenSemantics().attach(launcher.ecs)
    runs = CallCounter().attach(launcher.ecs)
    launcher_handler._launcher = launcher
    requests = [launch_request(f"r1-{seed}-{i}", deadline_in=None) for i in range(n)]
    crash_before_record = {r.launch_id for r in rng.sample(requests, n // 10)}
    crashes = len(crash_before_record)
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
            body_event(deliveries[start : start + 10], cp.queue_arn), LambdaContextStub()
        )
    # Crashed invocations' messages come back after the visibility timeout, once the launch lease has expired;
    # a tenth of all messages is also redelivered after a crash between recording and the SQS delete.
    now[0] += LauncherSettings.from_env().lease_seconds + 1
    again = [r.to_json() for r in requests if table.get(r.launch_id).task_arn is None]  # type: ignore[union-attr]
    again += [r.to_json() for r in rng.sample(requests, n // 10)]
    for start in range(0, len(again), 10):
        launcher_handler.handler(
            body_event(again[start : start + 10], cp.queue_arn, receive_count=3), LambdaContextStub()
        )
    launch_ids = {r.launch_id for r in requests}
    counts = {k: c for k, c in ecs_tasks_by_launch(cp).items() if k in launch_ids}
    return R1Result(
        launches=n,
        duplicates=sum(c - 1 for c in counts.values() if c > 1),
        tasks=len(counts),
        run_task_calls=runs.calls["RunTask"],
        legitimate_calls=n + crashes,
        deliveries=len(deliveries) + len(again),
        all_pending=all(item.state is TaskState.PENDING for item in table.get_many(launch_ids).values()),
    )


def test_r1_duplicate_deliveries_and_crashes_start_no_duplicate_task(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    result = run_r1(control_plane, 500)
    figure(
        f"R1 duplicate tasks: {result.duplicates} of {result.launches} launches ({result.run_task_calls} RunTask "
        f"calls for {result.deliveries} deliveries; {result.legitimate_calls} legitimate: one per launch plus one "
        "per crash before recording)"
    )
    assert result.duplicates == 0
    assert result.tasks == result.launches
    assert result.run_task_calls == result.legitimate_calls
    assert result.all_pending


class RecordingBus(ControlPlaneBus):
    """The project bus, as far as the status handler uses it: relaunch requests are kept for the launcher."""

    def __init__(self) -> None:
        super().__init__(None)
        self.relaunches: list[RelaunchRequest] = []

    def publish(
        self, detail_type: str, detail: Mapping[str, Any], *, required: bool = False, routine: bool = False
    ) -> None:
        if detail_type == bus_events.RELAUNCH_REQUESTED:
            self.relaunches.append(RelaunchRequest.model_validate(dict(detail)))


def run_r2(
    cp: ControlPlane, n: int, *, seed: int = 2, relaunches: int | None = None
) -> tuple[list[tuple[str, str, str | None]], int]:
    """Play every scenario's events shuffled and up to 3x duplicated, including relaunches (max_attempts 3)
    whose second ECS task's events mix with late copies of the first's; return (wrong end states, events)."""
    rng = random.Random(seed)
    launcher_handler.reset()
    bus = RecordingBus()
    status_handler._tracker = StatusTracker(StatusSettings.from_env(cp.env), bus=bus)
    names = list(SCENARIOS)
    plain = [launch_request(f"r2-{seed}-{i}", max_attempts=1) for i in range(n)]
    count = max(1, n // 5) if relaunches is None else relaunches
    relaunched = [launch_request(f"r2r-{seed}-{i}", max_attempts=3) for i in range(count)]
    items = launch_all(cp, plain + relaunched)
    plain_items = {r.launch_id: items[r.launch_id] for r in plain}
    world, expected = world_of(cp, plain_items, lambda i: names[i % len(names)])
    first_attempts, _ = world_of(
        cp, {r.launch_id: items[r.launch_id] for r in relaunched}, lambda i: "failed_to_start"
    )
    world.tasks.update(first_attempts.tasks)
    expected.update({r.launch_id: "relaunch" for r in relaunched})

    def copies(arn: str) -> list[dict[str, Any]]:
        return [e for event in world.run_to_end(arn) for e in [event] * rng.randint(1, 3)]

    pending = [e for arn in list(world.tasks) for e in copies(arn)]
    delivered = 0
    while pending or bus.relaunches:
        rng.shuffle(pending)
        # Deliver part of what is in flight; the rest arrives later, after the next attempt's events began.
        cut = max(1, len(pending) // 2) if bus.relaunches or len(pending) > 50 else len(pending)
        for event in pending[:cut]:
            status_handler.handler(event, LambdaContextStub())
        delivered += len(pending[:cut])
        pending = pending[cut:]
        requests, bus.relaunches = bus.relaunches, []
        if requests:
            launcher_handler.handler(
                body_event([r.to_json() for r in requests], cp.queue_arn), LambdaContextStub()
            )
            next_items = TaskTable(cp.table).get_many(r.launch_id for r in requests)
            second, _ = world_of(cp, next_items, lambda i: "exit0")
            world.tasks.update(second.tasks)
            pending += [e for arn in second.tasks for e in copies(arn)]
    return wrong_states(cp, expected), delivered


def test_r2_shuffled_and_duplicated_events_end_in_the_right_state(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 500
    wrong, events = run_r2(control_plane, n)
    total = n + n // 5
    figure(
        f"R2 right final state: {total - len(wrong)} of {total} tasks ({events} events, shuffled, up to 3x "
        f"duplicated; {n // 5} relaunched after a failed start, sidecars, late events of attempt 1 after attempt 2's)"
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
        # What the stack's rule delivers (a Fargate task's STOPPED after its container's exit is not).
        for event in [e for e in world.run_to_end(arn) if is_status_event(e["detail"])]:
            if rng.random() < 0.2:
                dropped += 1
                continue
            delivered += 1
            status_handler.handler(event, LambdaContextStub())
    wrong_before = wrong_states(control_plane, expected)
    before = len(wrong_before)
    unfinished_by_events = sum(1 for w in wrong_before if w[0] in RECONCILER_FINISHES)
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
        f"({dropped} of {dropped + delivered} delivered events dropped; {before} wrong before reconciling, "
        f"{unfinished_by_events} of them Fargate tasks whose essential sidecar exited first (no delivered event "
        "carries the Airflow exit code); "
        f"{report.list_calls} ListTasks and {report.describe_calls} DescribeTasks calls, {report.stopped_read} "
        f"stopped tasks read, {report.updated} applied)"
    )
    assert before > 0 and unfinished_by_events == sum(
        1 for s in expected.values() if s in RECONCILER_FINISHES
    )
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
    requests = requests_for(n, queued, lambda _i: horizon)
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


@dataclass
class AsyncInvokeRun:
    """What R7's asynchronous invocations did: attempts (Lambda's retries included), failed attempts, events
    sent to the on-failure destination, and the reconciler's replays of them."""

    invocations: int = 0
    failed: int = 0
    retried: int = 0
    to_destination: int = 0
    replayed: int = 0
    replay_passes: int = 0
    wrong_before_replay: int = 0
    wrong: list[tuple[str, str, str | None]] = field(default_factory=list)


def invoke_async(
    event: dict[str, Any], run: AsyncInvokeRun, on_failure: Callable[[str], None] | None
) -> None:
    """Play Lambda's asynchronous invoke of the status function (the ECS rule's target): the event, then up to
    ASYNC_RETRY_ATTEMPTS retries on a function error, then Lambda's invocation record to the on-failure
    destination (``on_failure``; None: no destination configured, the event is dropped)."""
    error: Exception | None = None
    for attempt in range(1 + STATUS_ASYNC_RETRY_ATTEMPTS):
        run.invocations += 1
        run.retried += attempt > 0
        try:
            status_handler.handler(event, LambdaContextStub())
            return
        except Exception as exc:
            run.failed += 1
            error = exc
    if on_failure is not None:
        run.to_destination += 1
        on_failure(json.dumps(lambda_failure_record("airflow-ecs-status", event, error)))


def run_r7(
    cp: ControlPlane,
    n: int,
    *,
    swallow_errors: bool = False,
    replay: bool = True,
    destination: bool = True,
) -> AsyncInvokeRun:
    """R7: the status Lambda fails 30% of invocations; Lambda's retries, the on-failure destination and the
    reconciler's replay finish every task.

    Failures: half are a throttled table (every GetItem/UpdateItem of that invocation answers
    ProvisionedThroughputExceededException; botocore's retries are off, so each stands for a call that still
    failed after them), half an exception after the work was done (a timeout before the function returned). A bug
    also fails every invocation for a few tasks' events until it is fixed, so they reach the destination for sure
    (and fail the reconciler's replay too, in the same code, until the fix). The mutations: ``swallow_errors`` (a
    handler that reports success whatever happened), no replay, no on-failure destination.
    """
    rng = random.Random(7)
    sqs = cp.client("sqs")
    queue_url = sqs.create_queue(QueueName="airflow-status-failed-events")["QueueUrl"]
    items = launch_all(cp, [launch_request(f"t{i}", max_attempts=1) for i in range(n)])
    # The replay passes below read no stopped tasks from ECS: the scenarios the delivered events finish.
    names = [name for name in SCENARIOS if name not in RECONCILER_FINISHES]
    world, expected = world_of(cp, items, lambda i: names[i % len(names)])
    buggy = set(rng.sample(sorted(expected), 5))

    no_retries = Config(retries={"total_max_attempts": 1})
    table = TaskTable(cp.table, client=boto3.client("dynamodb", region_name=REGION, config=no_retries))
    tracker = StatusTracker(StatusSettings.from_env(os.environ), table=table)
    throttled = [False]

    def throttle(**_: Any) -> Any:
        if not throttled[0]:
            return None
        error = {
            "Error": {
                "Code": "ProvisionedThroughputExceededException",
                "Message": "Rate of requests exceeded",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), error

    for operation in ("GetItem", "UpdateItem"):
        table.client.meta.events.register(f"before-call.dynamodb.{operation}", throttle)
    handle = tracker.handle
    bug_fixed = [False]

    def bug(event: Any) -> None:
        launch_id = TaskStateChange.model_validate(event).detail.environment(CONTAINER).get(LAUNCH_ID_ENV)
        if launch_id in buggy and not bug_fixed[0]:
            raise KeyError("a code path the new release broke")

    def flaky(event: Any) -> StatusResult:
        bug(event)
        roll = rng.random()
        if roll < 0.15:
            throttled[0] = True
            try:
                result = handle(event)
            finally:
                throttled[0] = False
            # An event that needs no read or write is not slowed by a throttled table: the function fails anyway.
            raise TimeoutError(f"Task timed out after 30.00 seconds ({result.value} first)")
        result = handle(event)
        if roll < 0.30:
            raise TimeoutError("Task timed out after 30.00 seconds (after its work)")
        return result

    tracker.handle = flaky  # type: ignore[method-assign]
    status_handler._tracker = tracker
    original_apply = status_handler.apply
    if swallow_errors:

        def swallowing(event: Any) -> StatusResult:
            try:
                return original_apply(event)
            except Exception:
                return StatusResult.APPLIED

        status_handler.apply = swallowing
    try:
        # The rule delivers only these steps; EventBridge invokes the function with each as it happens.
        events = [e for arn in world.tasks for e in world.run_to_end(arn) if is_status_event(e["detail"])]
        rng.shuffle(events)
        run = AsyncInvokeRun()

        def to_queue(body: str) -> None:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        for event in events:
            invoke_async(event, run, to_queue if destination else None)
        run.wrong_before_replay = len(wrong_states(cp, expected))
        if replay:
            # The reconciler's passes (its own function and table client: not the status function's faults, but
            # the same code, so the bug fails there too until it is fixed): one before the fix, one after.
            reconciler_tracker = StatusTracker(StatusSettings.from_env(os.environ), table=TaskTable(cp.table))
            reconciler_handle = reconciler_tracker.handle

            def reconciler_code(event: Any) -> StatusResult:
                bug(event)
                return reconciler_handle(event)

            reconciler_tracker.handle = reconciler_code  # type: ignore[method-assign]
            failed_events = FailedEvents(queue_url, reconciler_tracker, sqs, hide_seconds=0)
            for fixed in (False, True):
                bug_fixed[0] = fixed
                run.replayed += failed_events.replay().replayed
                run.replay_passes += 1
        run.wrong = wrong_states(cp, expected)
    finally:
        status_handler.apply = original_apply
    return run


@pytest.fixture
def quiet_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of injected failures: their warnings and the metrics lines would drown the figures.
    status_handler.logger.setLevel("ERROR")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")


def test_r7_status_errors_on_30_percent_of_invocations_lose_no_task(
    control_plane: ControlPlane, figure: Callable[[str], None], quiet_failures: None
) -> None:
    n = 500
    run = run_r7(control_plane, n)
    figure(
        f"R7 right final state with 30% status errors: {n - len(run.wrong)} of {n} "
        f"({run.failed} failed invocations of {run.invocations} = {run.failed / run.invocations:.0%}: 30% "
        f"injected plus a bug failing 5 tasks' events until fixed; {run.retried} Lambda retries, "
        f"{run.to_destination} events in the on-failure queue, {run.replayed} replayed by {run.replay_passes} "
        "reconciler passes; the reconciler's stale checks off)"
    )
    assert run.wrong == []
    assert 0.25 < run.failed / run.invocations < 0.40
    assert run.to_destination > 0 and run.wrong_before_replay > 0
    assert run.replayed == run.to_destination


@pytest.mark.parametrize(
    ("mutation", "reaches_the_queue", "why"),
    [
        # The failed-events queue is not replayed: its events wait forever.
        ({"replay": False}, True, "the reconciler does not replay the failed events"),
        # No on-failure destination: Lambda discards an event after its retries (the reason issue 13 moved to SQS).
        ({"destination": False}, False, "failed invocations are discarded"),
        # A failed event must raise: a handler that reports success is never retried nor kept.
        ({"swallow_errors": True}, False, "the handler reports success for a failed event"),
    ],
    ids=["without-the-replay", "without-the-on-failure-destination", "a-handler-that-swallows-errors"],
)
def test_r7_mutations_leave_tasks_wrong(
    control_plane: ControlPlane,
    quiet_failures: None,
    mutation: dict[str, bool],
    reaches_the_queue: bool,
    why: str,
) -> None:
    """The guards R7 proves, each removed in turn: R7's tasks end wrong."""
    run = run_r7(control_plane, 50, **mutation)
    assert (run.to_destination > 0) is reaches_the_queue
    assert run.wrong, f"R7 must fail when {why}"
