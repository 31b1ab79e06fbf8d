"""The scenarios of issue 6, each run once per executor in its own emulated account under the same model."""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecs_event_executor.control import botocore_data

from harness import REPO_ROOT
from harness.bench.emulator import ACCOUNT, REGION
from harness.bench.model import AwsModel
from harness.bench.world import TABLE, LoopRecord, World

KINDS = ("ours", "reference")


@dataclass
class SteadyResult:
    running: int
    requests_per_loop: float
    max_requests_per_loop: int
    blocking_per_loop: float
    cpu_per_loop: float
    operations: Counter[str]
    # 1,000 running + 100 newly queued (only measured at 1,000)
    queue_loop_blocking: float | None = None
    queue_loop_requests: int | None = None
    # The scale run's (ours): what the executor holds, and its periodic safety-net read once it is due.
    executor_bytes: int | None = None
    safety_net: SafetyNetResult | None = None


@dataclass
class SafetyNetResult:
    """Idle loops once the executor's periodic safety-net read (``_reconcile``) is due, at N tracked."""

    interval: float  # seconds between two reads: reconcile_interval_seconds over the slices of 100
    loops: int
    reads: int  # BatchGetItem requests in those loops
    requests_per_loop: float
    max_requests_per_loop: int
    cpu_per_loop: float  # median, the read's loops
    blocking_per_loop: float


@dataclass
class LifecycleResult:
    """Burst (scenario 2), then churn (scenario 3), and the whole run's requests (scenario 4)."""

    tasks: int
    all_launched_after: float | None
    run_task_calls: int
    throttled_responses: int
    failed_by_throttling: int
    failed: int
    launch_timeline: list[float]
    burst_loops: list[LoopRecord]
    churn_loops: list[LoopRecord]
    state_latencies: list[float]
    unreported: int
    requests: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0
    sqs_billed: int = 0
    custom_events: int = 0
    launcher_invocations: int = 0
    launcher_gb_s: float = 0.0
    launcher_cpu_per_record: float | None = None
    status_invocations: int = 0
    status_gb_s: float = 0.0
    log_bytes: int = 0  # what the handlers printed, counted (captured_log_bytes): Lambda ingests every byte
    status_cpu_per_event: float | None = None
    launcher_records: int = 0
    status_records: int = 0


# --------------------------------------------------------------------------------- scenario 1: steady state


def steady_state(
    kind: str,
    model: AwsModel,
    workloads: list[Any],
    extra: list[Any],
    loops: int,
    *,
    scale: bool = False,
) -> SteadyResult:
    """N tasks running, nothing changing: what one scheduler loop costs (and with 100 newly queued at 1,000).

    ``scale`` (ours): also what the executor holds for N tracked tasks, and ``loops`` more idle loops once its
    periodic safety-net read is due.
    """
    with World(kind, model) as world:
        _seed_running(world, workloads)
        world.loops.clear()
        world.start_loop()
        world.sim.run_until(lambda: len(world.loops) >= loops, limit=10_000)
        measured = list(world.loops)
        result = SteadyResult(
            running=len(workloads),
            requests_per_loop=statistics.mean(r.requests for r in measured),
            max_requests_per_loop=max(r.requests for r in measured),
            blocking_per_loop=statistics.median(r.blocking for r in measured),
            cpu_per_loop=statistics.median(r.cpu for r in measured),
            operations=sum((r.by_operation for r in measured), Counter()),
        )
        if extra:
            world.pending = list(extra)
            before = len(world.loops)
            world.sim.run_until(lambda: len(world.loops) > before, limit=10_000)
            loop = world.loops[before]
            result.queue_loop_blocking = loop.blocking
            result.queue_loop_requests = loop.requests
        if scale:
            result.executor_bytes = retained_bytes(world.executor)
            result.safety_net = _safety_net(world, loops)
        world.loop_running = False
        return result


def _safety_net(world: World, loops: int) -> SafetyNetResult:
    """Run ``loops`` idle loops after one reconcile interval has passed (skipped over: nothing changes in it),
    when the safety-net read is due: what it adds to a loop at this many tracked tasks."""
    from ecs_event_executor.executor import RECONCILE_SLICE

    interval = world.executor.settings.reconcile_interval_seconds
    tracked = len(world.executor.tracked_launches)
    # Skip the quiet interval rather than loop through it: the next loop starts after it, the read then due.
    world.loop_running = False
    world.sim.run_until(lambda: not world.sim._events, limit=world.sim.now - world.sim.start + 60)
    world.scheduler.time = world.sim.now = world.scheduler.time + interval
    before = len(world.loops)
    world.start_loop()
    world.sim.run_until(
        lambda: len(world.loops) >= before + loops, limit=world.sim.now - world.sim.start + 600
    )
    measured = world.loops[before:]
    return SafetyNetResult(
        interval=interval / max(1, -(-tracked // RECONCILE_SLICE)),
        loops=len(measured),
        reads=sum(r.by_operation["dynamodb.BatchGetItem"] for r in measured),
        requests_per_loop=statistics.mean(r.requests for r in measured),
        max_requests_per_loop=max(r.requests for r in measured),
        cpu_per_loop=statistics.median(r.cpu for r in measured),
        blocking_per_loop=statistics.median(r.blocking for r in measured),
    )


def retained_bytes(root: Any) -> int:
    """Return the bytes of every object reachable from ``root`` (``sys.getsizeof``, each object once).

    What the executor holds for its tracked tasks: its own maps and Airflow's (running, buffers) with their keys.
    Not followed: modules, classes, code, loggers and AWS clients (shared by the process, not per task).
    """
    import gc
    import logging
    import types

    from botocore.client import BaseClient

    skip = (
        type,
        types.ModuleType,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.CodeType,
        types.FrameType,
        logging.Logger,
        logging.LoggerAdapter,
        BaseClient,
    )
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _seed_running(world: World, workloads: list[Any]) -> None:
    """Bring ``workloads`` to RUNNING before the measurement, outside it (no latency, nothing counted).

    Both executors queue them through their real path. The reference's RunTask calls start the tasks in the ECS
    model, which are then marked RUNNING. For ours the launch messages are taken off the queue and their task
    items written: the first through the real launcher and status writes, the rest cloned from it into moto's
    store (writing 10,000 items through moto's HTTP path alone would take minutes).
    """
    sim = world.sim
    with world.emu.free(), world._as(world.scheduler):
        for workload in workloads:
            world.executor.queue_workload(workload, session=None)
        world.executor.heartbeat()
        if world.kind == "reference":
            for arn in list(world.emu.ecs.tasks):
                world.emu.ecs.transition(arn, "RUNNING", quiet=True)
        else:
            _write_running_items(world)
        # Let the change feed's overlap window pass, then read once: from here on nothing changes.
        world.scheduler.time += 60.0
        sim.now = world.scheduler.time
        world.executor.heartbeat()
        world.executor.get_event_buffer()
    sim._events.clear()
    world.launched.clear()


def _write_running_items(world: World) -> None:
    from ecs_event_executor.control.ecs_state import STARTED_BY
    from ecs_event_executor.control.messages import LaunchRequest, parse_message
    from ecs_event_executor.control.tasks.item import EcsSnapshot
    from ecs_event_executor.control.tasks.lifecycle import TaskState
    from ecs_event_executor.control.tasks.schema import Attr
    from ecs_event_executor.control.tasks.table import TaskTable
    from moto.dynamodb.models import dynamodb_backends

    queue = world.emu.launch_queue
    requests = [
        m
        for m in (parse_message(msg.body) for msg in queue.messages.values())
        if isinstance(m, LaunchRequest)
    ]
    queue.messages.clear()
    if not requests:
        return
    table = TaskTable(TABLE, client=world.emu.client("dynamodb"), clock=world.sim.clock)
    first = requests[0]
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/airflow/{'0' * 32}"
    table.create_for_launch(first, lease_seconds=60)
    table.record_launched(first.launch_id, 1, task_arn=arn, cluster_arn=None)
    snapshot = EcsSnapshot(state=TaskState.RUNNING, task_arn=arn, version=3, last_status="RUNNING")
    table.apply_ecs_event(first.launch_id, 1, snapshot)
    backend = dynamodb_backends[ACCOUNT][REGION]
    template = world.emu.billing.stored({"S": first.launch_id})
    assert template is not None and STARTED_BY
    for i, request in enumerate(requests[1:], start=1):
        item = copy.deepcopy(template)
        item[Attr.PK] = {"S": request.launch_id}
        item[Attr.RUN_ID] = {"S": request.key.run_id}
        item[Attr.TASK_ARN] = {"S": f"{arn[:-32]}{i:032x}"}
        backend.put_item(TABLE, item)


# ------------------------------------------------------------------------- scenarios 2-4: one lifecycle


def lifecycle(
    kind: str, model: AwsModel, workloads: list[Any], *, churn_seconds: float = 60.0
) -> LifecycleResult:
    """A burst of queued tasks until all are launched, they run, then all finish over ``churn_seconds``."""
    count = len(workloads)
    with World(kind, model) as world:
        t0, all_launched_after = _burst(world, workloads, limit=1800)
        burst_loops = list(world.loops)
        # Every task reaches RUNNING (and the executor has seen it), then the feed goes quiet.
        world.run_for(model.fargate_running_after + 20)
        # Churn: the containers exit one by one over churn_seconds.
        tasks = list(world.emu.ecs.tasks.values())
        start = world.sim.now + 1
        exits: dict[Any, float] = {}
        for i, task in enumerate(tasks):
            when = start + churn_seconds * i / max(1, len(tasks))
            key = world.airflow_key_of(task)
            if key is not None:
                exits[key] = when
            world.finish_task(task["taskArn"], when)
        churn_from = len(world.loops)
        world.sim.run_until(
            lambda: (
                all(world.reported.get(k, ("", 0))[0] in ("success", "failed") for k in exits)
                and world.sim.now > start + churn_seconds
            ),
            limit=world.sim.now - world.sim.start + churn_seconds + 600,
        )
        churn_loops = world.loops[churn_from:]
        latencies = [
            world.reported[k][1] - t
            for k, t in exits.items()
            if world.reported.get(k, ("", 0))[0] in ("success", "failed")
        ]
        world.loop_running = False
        result = LifecycleResult(
            tasks=count,
            all_launched_after=all_launched_after,
            run_task_calls=sum(a.requests["ecs.RunTask"] for a in world.actors),
            throttled_responses=sum(a.throttled for a in world.actors),
            failed_by_throttling=_failed_by_throttling(world),
            failed=len(world.failed_keys),
            launch_timeline=[t - t0 for t in sorted(world.launched)],
            burst_loops=burst_loops,
            churn_loops=churn_loops,
            state_latencies=latencies,
            unreported=len(exits) - len(latencies) + (count - len(exits)),
        )
        for actor in world.actors:
            result.requests.update(actor.requests)
            result.wru += actor.wru
            result.rru += actor.rru
            result.sqs_billed += actor.sqs_billed
            result.custom_events += actor.custom_events
        gb = model.launcher_memory_mb / 1024
        result.launcher_invocations = world.launcher.invocations
        result.launcher_gb_s = world.launcher.billed_seconds * gb
        result.launcher_records = world.launcher.records
        result.status_records = world.status.records
        if world.launcher.records:
            result.launcher_cpu_per_record = world.launcher.cpu / world.launcher.records
        result.status_invocations = world.status.invocations
        result.log_bytes = world.launcher.log_bytes + world.status.log_bytes
        result.status_gb_s = world.status.billed_seconds * model.status_memory_mb / 1024
        if world.status.records:
            result.status_cpu_per_event = world.status.cpu / world.status.records
        return result


def burst_only(kind: str, model: AwsModel, workloads: list[Any]) -> LifecycleResult:
    """A burst of queued tasks until all are launched (the scale run's burst: no churn after it)."""
    count = len(workloads)
    with World(kind, model) as world:
        t0, all_launched_after = _burst(
            world, workloads, limit=3600 + count / model.run_task_calls_per_second
        )
        # The last invocations end (their threads' requests are counted when they join).
        world.sim.run_until(lambda: world.launcher_idle, limit=world.sim.now - world.sim.start + 600)
        world.loop_running = False
        return LifecycleResult(
            tasks=count,
            all_launched_after=all_launched_after,
            run_task_calls=sum(a.requests["ecs.RunTask"] for a in world.actors),
            throttled_responses=sum(a.throttled for a in world.actors),
            failed_by_throttling=_failed_by_throttling(world),
            failed=len(world.failed_keys),
            launch_timeline=[t - t0 for t in sorted(world.launched)],
            burst_loops=list(world.loops),
            churn_loops=[],
            state_latencies=[],
            unreported=0,
        )


def _burst(world: World, workloads: list[Any], *, limit: float) -> tuple[float, float | None]:
    """Queue ``workloads`` at once and run until all launched or settled; return the start and the time to launch all."""
    count = len(workloads)
    t0 = world.sim.now
    world.pending = list(workloads)
    world.start_loop()
    launched = world.sim.run_until(
        lambda: len(world.launched) >= count or (len(world.failed_keys) > 0 and _settled(world, count)),
        limit=limit,
    )
    return t0, (max(world.launched) - t0) if launched and len(world.launched) >= count else None


def _settled(world: World, count: int) -> bool:
    return len(world.launched) + len(world.failed_keys) >= count


def _failed_by_throttling(world: World) -> int:
    """Tasks reported failed whose reason mentions throttling (either executor's words)."""
    failed = 0
    for key in world.failed_keys:
        events = [
            e for e in getattr(world.executor, "_task_event_logs", []) if getattr(e, "ti_key", None) == key
        ]
        text = " ".join(str(getattr(e, "extra", "")) for e in events)
        if re.search(r"throttl|rate exceeded", text, re.IGNORECASE) or not events:
            failed += 1
    return failed


# --------------------------------------------------------------------------------------- the Lambdas' cost


# Imports are timed on the wall clock, which a shared machine's other load only ever lengthens (the same import
# varied 220-390 ms between runs here): each figure is the fastest of this many fresh interpreters.
IMPORT_RUNS = 7


def deployed_import_times(name: str, runs: int = IMPORT_RUNS) -> tuple[float, float]:
    """Return a handler's cold import as deployed, in seconds: (from the assets' bytecode, from sources only).

    Imported from ``deployed_layout``: first from sources only (what the assets ship without a Python of the
    runtime's version), then after ``infra.bytecode.compile_bytecode`` (what bundling ships); the fastest of
    ``runs`` each (the machine's other load only ever adds time).
    """
    module = f"lambdas.{name}.handler"

    def cumulative(root: Path) -> float:
        return next(
            t for t, depth, m in _import_times(root, f"import {module}") if m == module and depth == 1
        )

    with deployed_layout(name) as root:
        sources = min(cumulative(root) for _ in range(runs))
        _compile_bytecode(root)
        compiled = min(cumulative(root) for _ in range(runs))
    return compiled, sources


@contextlib.contextmanager
def deployed_layout(name: str) -> Iterator[Path]:
    """Yield a directory holding ``lambdas/<name>/`` (the function's asset) and every package it imports from outside
    the standard library (the layer's), as they are deployed: one directory, packages at the top, without this
    machine's bytecode caches. ``_import_times`` imports from it alone, read-only."""
    probe = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"import lambdas.{name}.handler\n"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "tops -= set(sys.stdlib_module_names) | {'lambdas'}\n"
        "print(json.dumps({t: sys.modules[t].__file__ for t in tops if getattr(sys.modules.get(t), '__file__', None)}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    ).stdout
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for top, file in json.loads(out).items():
            path = Path(file)
            if path.name == "__init__.py":
                shutil.copytree(path.parent, root / top, ignore=ignore)
            else:
                shutil.copy2(path, root / path.name)
        shutil.copytree(REPO_ROOT / "lambdas" / name, root / "lambdas" / name, ignore=ignore)
        yield root


def _compile_bytecode(root: Path) -> None:
    """Compile ``root`` as bundling does, with this interpreter standing in for the runtime's."""
    from infra.bytecode import compile_bytecode

    compile_bytecode(root, sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}")


def _import_times(root: Path, code: str) -> list[tuple[float, int, str]]:
    """Run ``code`` in a fresh interpreter that sees only ``root`` (``-S``: no site-packages) and writes no
    bytecode (``-B``: Lambda's code is read-only); return ``-X importtime``'s lines as (cumulative seconds, depth,
    module)."""
    proc = subprocess.run(
        [sys.executable, "-S", "-B", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    lines = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            lines.append((int(match.group(1)) / 1e6, len(match.group(2)), match.group(3)))
    return lines


# The libraries every handler imports (its AWS clients, its message and settings models, its logger and metrics):
# their own import is the floor of a cold start that keeps them. pydantic and Powertools import their parts
# lazily: ``import pydantic`` is not its model machinery (``pydantic.main``, what defining a model loads), nor
# ``import aws_lambda_powertools`` its Logger and Metrics.
HANDLER_LIBRARIES = {
    "botocore": ("botocore.session",),
    "pydantic": ("pydantic", "pydantic.main"),
    "Powertools": ("aws_lambda_powertools", "aws_lambda_powertools.logging", "aws_lambda_powertools.metrics"),
}


def library_import_times(runs: int = IMPORT_RUNS) -> dict[str, float]:
    """Return each of ``HANDLER_LIBRARIES``' import time (seconds) as deployed (the status handler's layout, from
    bytecode), imported one after another as a handler does (what one pulls in is not counted again for the
    next): fastest of ``runs``, compared by their sum."""
    library_of = {module: name for name, modules in HANDLER_LIBRARIES.items() for module in modules}
    code = "; ".join(f"import {m}" for m in library_of)
    best: dict[str, float] | None = None
    with deployed_layout("status") as root:
        _compile_bytecode(root)
        for _ in range(runs):
            run = dict.fromkeys(HANDLER_LIBRARIES, 0.0)
            for seconds, depth, module in _import_times(root, code):
                if module in library_of and depth == 1:
                    run[library_of[module]] += seconds
            if best is None or sum(run.values()) < sum(best.values()):
                best = run
    assert best is not None
    return best


# The clients each handler builds on its first invocation, before its first request: botocore loads their service
# models and endpoint rules then (the launcher's SQS and bus clients wait for a retry, poison or a notification).
FIRST_INVOCATION_CLIENTS = {"launcher": ("ecs", "dynamodb"), "status": ("dynamodb",)}
# The rest of what a handler defers to its first invocation (code run in the measured process): the pydantic
# validators of what it parses (built on first use, so a model a handler never validates costs it nothing), and the
# launcher's check of its first RunTask's arguments against botocore's ECS model (the model its ECS client loaded).
FIRST_INVOCATION_WORK = {
    "launcher": "from ecs_event_executor.control.messages import parse_message\n"
    'parse_message(\'{"schema": 1, "kind": "ping", "owner": "bench"}\')\n'
    "from ecs_event_executor.control.executor_config import run_task_input_shape\n"
    "run_task_input_shape()\n",
    "status": "from ecs_event_executor.control.ecs_state import TaskStateChange\n"
    "TaskStateChange.model_validate({'source': 'aws.ecs', 'detail-type': 'ECS Task State Change', "
    "'detail': {'taskArn': 'arn:aws:ecs:eu-west-1:1:task/airflow/1', 'lastStatus': 'RUNNING'}})\n",
}


def cold_start(name: str, runs: int = IMPORT_RUNS) -> tuple[float, float, float]:
    """Return a handler's cold start, fastest of ``runs``: (its import as deployed, from bytecode; the same from
    sources only; the first invocation's deferred work). Deferred work is cold-start work too: the clients are
    built on the first invocation, from the trimmed botocore data the bundling step puts in the Lambdas' layer
    (written here the same way)."""
    compiled, sources = deployed_import_times(name, runs)
    with tempfile.TemporaryDirectory() as tmp:
        data = botocore_data.write(Path(tmp) / botocore_data.BUNDLED_DIR.name)
        return compiled, sources, min(_clients_time(name, data) for _ in range(runs))


def _clients_time(name: str, data: Path) -> float:
    code = (
        f"import time, pathlib, lambdas.{name}.handler\n"
        "from ecs_event_executor.control import botocore_data\n"
        "from ecs_event_executor.control.aws_clients import lambda_client\n"
        f"botocore_data.BUNDLED_DIR = pathlib.Path({str(data)!r})\n"
        "started = time.perf_counter()\n"
        f"for service in {FIRST_INVOCATION_CLIENTS[name]!r}: lambda_client(service)\n"
        f"{FIRST_INVOCATION_WORK[name]}"
        "print(time.perf_counter() - started)"
    )
    # As in Lambda, the region and the credentials are in the environment (no credential provider goes looking).
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True, env=env
    ).stdout
    return float(out.strip())


def run_all(
    model: AwsModel,
    sizes: list[int],
    burst: int,
    loops: int,
    extra_queued: int,
    progress: Callable[[str], None],
    *,
    churn_seconds: float = 60.0,
    scale_sizes: tuple[int, ...] = (),
    scale_bursts: tuple[int, ...] = (),
    import_runs: int = IMPORT_RUNS,
) -> dict[str, Any]:
    """Run every scenario; the scale run (ours only) goes in a second process alongside the others.

    Each executor and handler is charged its own thread's CPU time, so two processes on two cores measure what
    one would; the handlers' cold imports (wall clock) are measured after both are done.
    """
    from harness.bench.world import make_workloads

    scale = None
    if scale_sizes or scale_bursts:
        # spawn, not fork: this process has started threads (the simulated processes, the progress bar).
        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        scale = pool.submit(run_scale, model, scale_sizes, scale_bursts, loops)
        pool.shutdown(wait=False)
    workloads = make_workloads(max([*sizes, burst]) + extra_queued)
    steady: dict[str, list[SteadyResult]] = {k: [] for k in KINDS}
    for n in sizes:
        for kind in KINDS:
            progress(f"steady state {n:,} running: {kind}")
            extra = (
                workloads[n : n + extra_queued] if n == 1000 or (n == sizes[-1] and 1000 not in sizes) else []
            )
            steady[kind].append(steady_state(kind, model, workloads[:n], extra, loops))
    life: dict[str, LifecycleResult] = {}
    for kind in KINDS:
        progress(f"burst of {burst:,}, then churn: {kind}")
        life[kind] = lifecycle(kind, model, workloads[:burst], churn_seconds=churn_seconds)
    scale_steady: list[SteadyResult] = []
    bursts: list[LifecycleResult] = []
    if scale is not None:
        sizes_text = ", ".join(f"{n:,}" for n in (*scale_sizes, *scale_bursts))
        progress(f"scale ({sizes_text}): ours, in its own process")
        scale_steady, bursts = scale.result()
        for _ in range(len(scale_sizes) + len(scale_bursts) - 1):
            progress("scale: done")
    progress("handler import times")
    imports = {name: cold_start(name, import_runs) for name in ("launcher", "status")}
    libraries = library_import_times(import_runs)
    return {
        "import_runs": import_runs,
        "libraries": libraries,
        "steady": steady,
        "lifecycle": life,
        "imports": imports,
        "scale_steady": scale_steady,
        "bursts": bursts,
    }


def run_scale(
    model: AwsModel, sizes: tuple[int, ...], bursts: tuple[int, ...], loops: int
) -> tuple[list[SteadyResult], list[LifecycleResult]]:
    """The scale run (ours only; the reference's loop at 50,000 running would take about a minute of simulated
    time per loop): steady state with the safety-net read at each of ``sizes``, a burst of each of ``bursts``.
    Runs in a process of its own (``run_all``): it sets up the environment as ``python -m harness.bench`` does."""
    import io
    import logging
    import warnings

    from harness.bench.world import make_workloads, prepare_environment

    prepare_environment()
    logging.disable(logging.CRITICAL)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        workloads = make_workloads(max([*sizes, *bursts]))
        steady = [steady_state("ours", model, workloads[:n], [], loops, scale=True) for n in sizes]
        launched = []
        for n in bursts:
            with _token_lifetime(burst_token_lifetime(n, model)):
                launched.append(burst_only("ours", model, workloads[:n]))
    return steady, launched


def burst_token_lifetime(tasks: int, model: AwsModel) -> float:
    """Return a workload-token lifetime long enough for a burst of ``tasks`` queued at once to launch at the
    modelled quota: at the default (600 s, less the executor's 180 s launch margin) launches stop at their
    deadline after about 8,400 tasks (420 s at 20 a second) and the rest are handed back to Airflow's requeue,
    as they should be, so a burst of 10,000 would measure the deadline, not the launch rate."""
    return max(600.0, 3 * tasks / model.run_task_calls_per_second + 600.0)


@contextlib.contextmanager
def _token_lifetime(seconds: float) -> Iterator[None]:
    """Set the Airflow option the installed version's workload tokens are valid for (what the executor's launch
    deadline follows) while a world is built and run."""
    from ecs_event_executor.airflow_compat import token_lifetime_option
    from ecs_event_executor.executor import AIRFLOW_VERSION

    section, key = token_lifetime_option(AIRFLOW_VERSION)
    name = f"AIRFLOW__{section.upper()}__{key.upper()}"
    previous = os.environ.get(name)
    os.environ[name] = f"{seconds:.0f}"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous
