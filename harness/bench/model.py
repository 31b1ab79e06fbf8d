"""The model of AWS both executors run against: latency per API, Fargate's launch quotas, list prices, sim time.

Every number here is printed with the results. Time is simulated: a call charges its modelled latency to the
caller's own clock (an ``Actor``), so the bench is fast and does not depend on the machine's load, except for
the CPU time the executors' own code takes, which is measured and added.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# Modelled latency (seconds) of one request, by "service.Operation"; "service.*" is the service's default.
DEFAULT_LATENCY: dict[str, float] = {
    "ecs.RunTask": 0.150,
    "ecs.DescribeTasks": 0.100,
    "ecs.*": 0.100,
    "sqs.SendMessageBatch": 0.020,
    "sqs.*": 0.020,
    "dynamodb.Query": 0.010,
    "dynamodb.*": 0.010,
    "eventbridge.*": 0.020,
}


@dataclass(frozen=True)
class Prices:
    """AWS list prices, us-east-1 (USD), as of the date below."""

    as_of: str = "list prices as of 2026 (SQS: AWS pricing as quoted Mar 2026; DynamoDB on-demand: after the Nov 2024 cut)"
    sqs_per_million_requests: float = 0.40  # standard queue, each 64 KB chunk of a payload is one request
    ddb_per_million_wru: float = 0.625  # on-demand write request units (1 KB each)
    ddb_per_million_rru: float = (
        0.125  # on-demand read request units (4 KB strongly consistent, 8 KB eventual)
    )
    lambda_per_million_requests: float = 0.20
    lambda_per_gb_second: float = 0.0000133334  # arm64 (the stack's architecture; x86 is 0.0000166667)
    eventbridge_custom_per_million: float = 1.00  # 64 KB chunks; AWS service events on the default bus: free
    ecs_api: float = 0.0  # ECS API calls are free (Fargate bills vCPU/GB per second, not requests)
    cloudwatch_logs_per_gb: float = 0.50  # CloudWatch Logs standard ingestion (Lambda's logs)


@dataclass(frozen=True)
class AwsModel:
    """Latency and quotas applied at the botocore level to every client both executors and the Lambdas use."""

    latency: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LATENCY))
    # Fargate RunTask: 20 API calls per second (bucket of 20), 100 task launches burst refilled at 20 per second.
    run_task_calls_per_second: float = 20.0
    run_task_call_burst: float = 20.0
    task_launch_burst: float = 100.0
    task_launch_per_second: float = 20.0
    # What happens around the calls (not requests, but part of the path an ECS state takes to Airflow).
    # ECS event -> the status function running it: EventBridge's delivery to its Lambda target (an asynchronous
    # invoke) and Lambda's internal event queue. AWS publishes no figure; EventBridge's own target latency is
    # typically well under half a second, and Lambda's async queue adds tens of ms when not throttled. Modelled at
    # 0.5 s, as the SQS path was (EventBridge -> SQS -> the poller's long poll), so latency figures compare.
    eventbridge_delivery_seconds: float = 0.5
    # Execution environments the async invocations run in (Lambda scales them with the load; 5 is enough here:
    # an event takes a few ms of work).
    status_concurrency: int = 5
    lambda_invoke_overhead_seconds: float = 0.010  # warm invocation
    scheduler_idle_sleep_seconds: float = 1.0  # [scheduler] scheduler_idle_sleep_time: the loop's pause
    fargate_pending_after: float = 10.0  # PROVISIONING -> PENDING
    fargate_running_after: float = 30.0  # PROVISIONING -> RUNNING
    deprovision_seconds: float = 2.0  # STOPPING (exit code known) -> DEPROVISIONING
    stopped_after_exit: float = 7.0  # STOPPING -> STOPPED
    # The stack's memory sizes (the launcherMemoryMb setting's default, infra/status.py MEMORY_MB).
    # Lambda gives a function CPU in proportion to its memory, one full vCPU at 1,769 MB: the handlers' measured
    # CPU time is stretched by that share.
    launcher_memory_mb: int = 128
    status_memory_mb: int = 256
    lambda_full_vcpu_mb: int = 1769
    launcher_max_concurrency: int = 2  # the stack's default SQS event source maximum concurrency
    launcher_batch_size: int = 10
    launcher_batching_window: float = 1.0
    # What the run's requests do not show, modelled (every figure printed with the cost):
    # Lambda's platform lines per invocation: none is ingested with the stack's JSON logging and system level WARN
    # (START, END and REPORT are about 400 bytes at INFO). What the handlers print (their INFO lines, their EMF
    # metrics) is counted in the run, not modelled (world.captured_log_bytes).
    log_bytes_per_invocation: int = 0
    # Lambda bills the INIT phase (since August 2025): one cold start per this many invocations, each as long as
    # the handler's measured cold import plus the runtime's own start.
    invocations_per_cold_start: int = 1000
    runtime_start_seconds: float = 0.1
    # Time-driven costs, charged per 1M tasks at this throughput: the reconciler's schedule (one pass of about
    # reconciler_pass_seconds at reconciler_memory_mb) and the executor's idle loops (one change-feed Query of
    # 0.5 RRU a loop) plus its safety-net read (BatchGetItem of the tracked items every 300 s).
    tasks_per_month: int = 1_000_000
    reconcile_every_minutes: int = 5
    reconciler_pass_seconds: float = 1.0
    reconciler_memory_mb: int = 256
    safety_net_seconds: float = 300.0
    safety_net_tracked_items: int = 100
    prices: Prices = field(default_factory=Prices)

    def lambda_cpu_seconds(self, cpu: float, memory_mb: int) -> float:
        """Return how long ``cpu`` seconds of one full core take in a function with ``memory_mb``."""
        return cpu * max(1.0, self.lambda_full_vcpu_mb / memory_mb)

    def latency_of(self, service: str, operation: str) -> float:
        return self.latency.get(f"{service}.{operation}", self.latency.get(f"{service}.*", 0.0))

    def describe(self) -> list[str]:
        """Return the model as lines, for the report."""
        lat = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.latency.items())
        p = self.prices
        return [
            f"Latency per request: {lat}.",
            f"Fargate RunTask: {self.run_task_calls_per_second:g} calls/s (bucket {self.run_task_call_burst:g}); "
            f"task launches: burst {self.task_launch_burst:g}, refill {self.task_launch_per_second:g}/s; "
            "ThrottlingException when either bucket is empty (botocore's default retries apply).",
            f"ECS task: PENDING after {self.fargate_pending_after:g} s, RUNNING after {self.fargate_running_after:g} s; "
            f"on exit STOPPING (exit code), DEPROVISIONING +{self.deprovision_seconds:g} s, STOPPED "
            f"+{self.stopped_after_exit:g} s; the rule delivers STOPPING, STOPPED (not a Fargate task's after an "
            "essential container's exit: its STOPPING carried the exit code) and a RUNNING whose desired status is "
            "STOPPED (not plain RUNNING). EventBridge -> the status Lambda (asynchronous invoke, one "
            f"event each, {self.status_concurrency} execution environments) "
            f"{self.eventbridge_delivery_seconds:g} s, warm Lambda invoke "
            f"{self.lambda_invoke_overhead_seconds * 1000:.0f} ms.",
            f"Scheduler loop: heartbeat, then {self.scheduler_idle_sleep_seconds:g} s idle sleep. Launcher: SQS "
            f"event source, batch {self.launcher_batch_size}, window {self.launcher_batching_window:g} s, "
            f"maximum concurrency {self.launcher_max_concurrency}; an invocation applies its batch on "
            f"{self.launcher_batch_size} threads, each environment pacing RunTask at "
            f"{self.run_task_calls_per_second / self.launcher_max_concurrency:g}/s (the stack's share). "
            f"Lambda memory: launcher {self.launcher_memory_mb} "
            f"MB, status {self.status_memory_mb} MB, arm64; CPU in proportion to memory (1 vCPU at "
            f"{self.lambda_full_vcpu_mb} MB), so a handler's measured CPU time is stretched by that share.",
            f"Prices (us-east-1, {p.as_of}): SQS ${p.sqs_per_million_requests}/1M requests (64 KB chunks); "
            f"DynamoDB on-demand ${p.ddb_per_million_wru}/1M WRU, ${p.ddb_per_million_rru}/1M RRU; Lambda "
            f"${p.lambda_per_million_requests}/1M requests + ${p.lambda_per_gb_second}/GB-s; EventBridge custom "
            f"events ${p.eventbridge_custom_per_million}/1M (AWS service events free); ECS API free.",
        ]


class TokenBucket:
    """A token bucket refilled continuously; ``take`` at simulated time ``now``."""

    def __init__(self, capacity: float, per_second: float) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.tokens = capacity
        self.at = -math.inf

    def _refill(self, now: float) -> None:
        if now > self.at:
            if self.at != -math.inf:
                self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
            self.at = now

    def available(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


@dataclass
class Actor:
    """Something that calls AWS on its own clock: a scheduler loop, a Lambda execution environment."""

    name: str
    time: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)  # "service.Operation" -> HTTP requests
    waited: float = 0.0  # modelled latency plus retry sleeps charged to this actor
    emulator_cpu: float = 0.0  # thread CPU spent inside the emulator on this actor's behalf
    throttled: int = 0
    # What the requests are billed by: DynamoDB request units, SQS 64 KB chunks, custom EventBridge events.
    wru: float = 0.0
    rru: float = 0.0
    sqs_billed: int = 0
    custom_events: int = 0

    def wait(self, seconds: float) -> None:
        self.time += seconds
        self.waited += seconds

    def absorb(self, other: Actor) -> None:
        """Add what ``other`` (a thread of this actor's invocation) requested and was billed."""
        self.requests.update(other.requests)
        self.throttled += other.throttled
        self.wru += other.wru
        self.rru += other.rru
        self.sqs_billed += other.sqs_billed
        self.custom_events += other.custom_events


class Process:
    """Code that runs on simulated time in its own thread, one step at a time: it hands control back to the event
    loop whenever it waits (a request's latency, a back-off, a pacer), so the requests of every process are
    served in the order of their simulated times, not in the order the code happens to run."""

    def __init__(self, sim: Sim, fn: Callable[[], None], actor: Actor) -> None:
        self.sim = sim
        self.fn = fn
        self.actor = actor
        self.done = False
        self.error: BaseException | None = None
        self.on_done: Callable[[], None] | None = None
        self.resume = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._run, name=f"sim:{actor.name}", daemon=True)

    def _run(self) -> None:
        self.resume.acquire()
        self.sim._local.process = self
        try:
            self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done = True
            if self.on_done is not None:
                self.on_done()
            self.sim._baton.release()


class Sim:
    """Discrete-event loop over simulated time; the current actor's clock is what product code reads.

    Events run inline; a ``process`` runs in its own thread but never alongside anything else: exactly one of
    the loop and the processes runs at a time (a baton), so no emulated state is touched concurrently.
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.now = start
        self.system = Actor("aws", time=start)
        self.current = self.system
        self._events: list[tuple[float, int, Callable[[], None], Actor | None]] = []
        self._seq = itertools.count()
        self._baton = threading.Semaphore(0)
        self._local = threading.local()

    def clock(self) -> float:
        return self.current.time

    def process(self, when: float, fn: Callable[[], None], actor: Actor) -> Process:
        """Start ``fn`` as a process on ``actor``'s clock at ``when``."""
        proc = Process(self, fn, actor)
        proc.thread.start()
        self.at(when, lambda: self._switch_to(proc), actor)
        return proc

    def in_process(self) -> bool:
        """Whether the caller runs inside a process (and may wait or join)."""
        return getattr(self._local, "process", None) is not None

    def _switch_to(self, proc: Process) -> None:
        proc.resume.release()
        self._baton.acquire()
        # A joined process's error goes to the process that joined it; any other's stops the loop.
        if proc.done and proc.error is not None and proc.on_done is None:
            raise proc.error

    def _yield(self) -> None:
        proc: Process = self._local.process
        self._baton.release()
        proc.resume.acquire()
        self.current = proc.actor

    def wait(self, actor: Actor, seconds: float) -> None:
        """Charge ``seconds`` to ``actor``; inside a process, let everything due before then happen first."""
        actor.wait(seconds)
        proc: Process | None = getattr(self._local, "process", None)
        if proc is None or proc.actor is not actor or seconds <= 0:
            return
        self.at(actor.time, lambda: self._switch_to(proc), actor)
        self._yield()

    def join(self, procs: list[Process]) -> None:
        """Inside a process: wait until ``procs`` are done; resume at the latest of their clocks."""
        me: Process = self._local.process
        pending = [p for p in procs if not p.done]
        if not pending:
            return

        def finished() -> None:
            if all(p.done for p in procs):
                end = max(p.actor.time for p in procs)
                self.at(max(end, me.actor.time), lambda: self._switch_to(me), me.actor)

        for p in pending:
            p.on_done = finished
        self._yield()
        errors = [p.error for p in procs if p.error is not None]
        if errors:
            raise errors[0]

    def at(self, when: float, fn: Callable[[], None], actor: Actor | None = None) -> None:
        heapq.heappush(self._events, (when, next(self._seq), fn, actor))

    def step(self) -> bool:
        if not self._events:
            return False
        when, _, fn, actor = heapq.heappop(self._events)
        self.now = max(self.now, when)
        actor = actor or self.system
        actor.time = max(actor.time, when)
        previous, self.current = self.current, actor
        try:
            fn()
        finally:
            self.current = previous
        return True

    def run_until(self, done: Callable[[], bool], *, limit: float) -> bool:
        """Run events until ``done()`` or simulated time passes ``start + limit``; return whether done."""
        while not done():
            if not self._events or self._events[0][0] > self.start + limit:
                return False
            self.step()
        return True
