"""Figures for the reconciler and the change feed: MISSING right after launch (R8), writers' clocks off the
reader's (R12), and one reconciler pass over tens of thousands of active items (P6)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from ecs_event_executor.change_feed import ChangeFeed
from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY
from ecs_event_executor.control.launching import Launcher, LauncherSettings, RetryLater
from ecs_event_executor.control.reconciling import WRITE_THREADS, Reconciler, ReconcilerSettings
from ecs_event_executor.control.tasks.item import EcsSnapshot
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from harness.bench.model import DEFAULT_LATENCY
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.support.aws import CallCounter, EventuallyConsistentDescribeTasks, LambdaContextStub, create_table
from tests.support.ecs_events import task_event
from tests.support.ecs_world import EcsWorld
from tests.support.feed_sim import OWNER, ReaderClockFeed, SkewedWriters, run_feed
from tests.support.requests import launch_request

pytestmark = pytest.mark.reliability


class SimClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_r8_missing_right_after_launch_fails_no_running_task(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 100
    rng = random.Random(8)
    clock = SimClock()
    start = clock.now
    table = TaskTable(control_plane.table, clock=clock)
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=clock)
    throttle = {"on": True}

    def throttled(**_: Any) -> Any:
        if not throttle["on"]:
            return None
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), error

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", throttled)
    requests = [launch_request(f"r8-{i}", deadline_in=None) for i in range(n)]
    # Every launch is claimed now and throttled; each gets through at a random time in the next 20 minutes.
    for request in requests:
        with pytest.raises(RetryLater):
            launcher.handle(request.to_json(), receive_count=1)
    launch_at = sorted((start + rng.uniform(0, 1200), r) for r in requests)
    env = dict(control_plane.env, STALE_AFTER_SECONDS="600")
    reconciler = Reconciler(ReconcilerSettings.from_env(env), table=table, clock=clock)
    world = EcsWorld().attach(reconciler.ecs)
    # DescribeTasks does not show a task yet at its first check (eventual consistency right after RunTask).
    lag = EventuallyConsistentDescribeTasks(misses=1).attach(reconciler.ecs)
    passes = missing = lost = 0
    ecs = control_plane.client("ecs")
    for minute in range(0, 46):
        clock.now = start + minute * 60
        if minute % 2 == 0:
            # A throttled message comes back after its backoff (at most 2 minutes) and is throttled again.
            throttle["on"] = True
            for _, request in launch_at:
                with pytest.raises(RetryLater):
                    launcher.handle(request.to_json(), receive_count=5)
        throttle["on"] = False
        while launch_at and launch_at[0][0] <= clock.now:
            _, request = launch_at.pop(0)
            launcher.handle(request.to_json(), receive_count=2)
            item = table.get(request.launch_id)
            assert item is not None and item.task_arn
            world.add(
                ecs.describe_tasks(cluster=control_plane.ecs.cluster, tasks=[item.task_arn])["tasks"][0],
                "exit0",
            )
            for _ in range(3):  # PROVISIONING, PENDING, RUNNING: delivered
                status_handler.handler(world.step(item.task_arn), LambdaContextStub())
        if minute % 5 == 0:  # the schedule: every 5 minutes
            report = reconciler.run()
            passes += 1
            missing += report.missing
            lost += report.lost
    final = table.get_many(r.launch_id for r in requests).values()
    failed = [i for i in final if i.state is TaskState.FAILED]
    running = [i for i in final if i.state is TaskState.RUNNING]
    figure(
        f"R8 running tasks failed: {len(failed)} of {n} (DescribeTasks answered MISSING to the first check of "
        f"every task, {lag.served} answers; {missing} noted as a first miss, {lost} declared lost; {passes} passes "
        "over 45 minutes, launches throttled up to 20 minutes)"
    )
    assert lag.served > 0
    assert failed == [] and len(running) == n


def test_r12_writers_clocks_a_minute_off_miss_no_change_without_the_safety_net(
    aws: None, figure: Callable[[str], None]
) -> None:
    overlap_ms = 15_000
    skews = (-60.0, -30.0, 0.0, 30.0, 60.0)
    per_skew = 100
    missed = old_missed = idle_items = idle_reads = queries = reads = 0
    for k, skew in enumerate(skews):
        # Writers (Lambdas) agree with each other to half a second; the reader's clock is ``skew`` off theirs.
        writers = [skew - 0.5, skew, skew + 0.5]
        world = SkewedWriters(create_table(f"feed-{k}"), start=time.time(), rng=random.Random(k))
        feed = ChangeFeed(OWNER, start_ms=int(world.now * 1000), overlap_ms=overlap_ms)
        run = run_feed(feed, world, skews=writers, changes=per_skew, duration=120, max_lag=2.0)
        missed += run.missed
        idle_items += run.idle_items
        idle_reads += run.idle_reads
        queries += run.queries
        reads += run.reads
        old_world = SkewedWriters(create_table(f"feed-old-{k}"), start=time.time(), rng=random.Random(k))
        old = ReaderClockFeed(OWNER, start_ms=int(old_world.now * 1000), overlap_ms=overlap_ms)
        old_missed += run_feed(
            old, old_world, skews=writers, changes=per_skew, duration=120, max_lag=2.0
        ).missed
    total = per_skew * len(skews)
    figure(
        f"R12 changes missed with writers' clocks -60..+60 s off the reader's, safety net off: {missed} of {total} "
        f"(overlap 15 s, index lag up to 2 s; {queries} Queries for {reads} reads; after a minute of quiet "
        f"{idle_items} items in {idle_reads} idle reads; the reader-clock window of b84b779 missed {old_missed})"
    )
    assert missed == 0
    assert idle_items == 0 and queries == reads
    assert old_missed > 0


def _describe_running(tasks: dict[str, dict[str, Any]]) -> Callable[..., Any]:
    """Answer DescribeTasks from ``tasks`` (arn -> event detail): every task RUNNING, as ECS would."""

    def answer(params: dict[str, Any], **_: Any) -> Any:
        body = params["body"]
        asked = json.loads(body.decode() if isinstance(body, bytes) else body)["tasks"]
        found = [tasks[arn] for arn in asked if arn in tasks]
        return AWSResponse("https://ecs.amazonaws.com/", 200, {}, None), {"tasks": found, "failures": []}

    return answer


def test_p6_one_reconciler_pass_over_50000_active_items_fits_its_schedule(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 1000
    target = 50_000
    period_s, budget_s, stale_after_s, ecs_memory_s = 300, 280, 600, 3600
    table = TaskTable(control_plane.table)
    cluster_arn = control_plane.ecs.cluster_arn
    details: dict[str, dict[str, Any]] = {}
    for i in range(n):
        request = launch_request(f"p6-{i}", deadline_in=None)
        table.create_for_launch(request, lease_seconds=60)
        arn = f"arn:aws:ecs:us-east-1:123456789012:task/airflow/{i:032x}"
        table.apply_ecs_event(
            request.launch_id, 1, EcsSnapshot(TaskState.RUNNING, arn, 3, "RUNNING", cluster_arn=cluster_arn)
        )
        overrides = [{"name": LAUNCH_ID_ENV, "value": request.launch_id}, {"name": ATTEMPT_ENV, "value": "1"}]
        task = {
            "taskArn": arn,
            "clusterArn": cluster_arn,
            "startedBy": STARTED_BY,
            "overrides": {"containerOverrides": [{"name": "base", "environment": overrides}]},
        }
        details[arn] = task_event(task, last_status="RUNNING", version=3)["detail"]
    clock = lambda: time.time() + 3600  # noqa: E731  every item is stale
    env = dict(control_plane.env, STALE_AFTER_SECONDS=str(stale_after_s))
    reconciler = Reconciler(
        ReconcilerSettings.from_env(env), table=TaskTable(control_plane.table, clock=clock), clock=clock
    )
    reconciler.ecs.meta.events.register("before-call.ecs.DescribeTasks", _describe_running(details))
    ddb = CallCounter().attach(reconciler.table.client)
    ecs = CallCounter().attach(reconciler.ecs)
    began = time.perf_counter()
    report = reconciler.run(time_budget_seconds=budget_s)
    wall = time.perf_counter() - began
    assert (report.checked, report.unchanged, report.lost, report.out_of_time) == (n, n, 0, 0)

    def latency(service: str, op: str) -> float:
        return DEFAULT_LATENCY.get(f"{service}.{op}", DEFAULT_LATENCY[f"{service}.*"])

    # Reads and DescribeTasks run one after another; the per-item writes of a batch on WRITE_THREADS threads.
    serial = sum(c * latency("dynamodb", op) for op, c in ddb.calls.items() if op != "UpdateItem")
    serial += sum(c * latency("ecs", op) for op, c in ecs.calls.items())
    writes = ddb.calls["UpdateItem"] * latency("dynamodb", "UpdateItem") / WRITE_THREADS
    per_item_s = (serial + writes) / n
    modelled = per_item_s * target
    per_item_requests = (ddb.total + ecs.total) / n
    figure(
        f"P6 one reconciler pass over {target:,} active items: {modelled:.0f} s modelled, inside the {budget_s} s "
        f"budget of a {period_s} s pass (measured on {n:,}: {per_item_requests:.2f} requests per item "
        f"[{', '.join(f'{op} {c}' for op, c in sorted({**ddb.calls, **ecs.calls}.items()))}], "
        f"{wall / n * 1000:.1f} ms per item under moto; extrapolated linearly with harness/bench/model.py latencies, "
        f"writes on {WRITE_THREADS} threads; every item checked within {stale_after_s + period_s} s of its last "
        f"check, ECS remembers a stopped task ~{ecs_memory_s} s)"
    )
    assert modelled < budget_s
    assert stale_after_s + period_s < ecs_memory_s
