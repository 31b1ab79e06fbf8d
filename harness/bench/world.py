"""One emulated account with one executor in it, driven the way the Airflow scheduler drives an executor.

The scheduler loop calls ``queue_workload`` for what became queued, then ``heartbeat()`` (which triggers the
queued workloads and calls ``sync()``), then sleeps ``scheduler_idle_sleep_time``. For our executor the control
plane runs too: the launcher Lambda behind an SQS event source (batch 10, maximum concurrency 5) and the status
Lambda behind the ECS task-state rule, both through their real ``handler(event, context)``. ECS tasks move on
the model's timetable and emit their task-state events.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ecs_event_executor.control import environment as env_vars

from harness.aws_shapes import ACCOUNT, LambdaContext, sqs_event, sqs_record
from harness.bench.emulator import (
    CLUSTER,
    CLUSTER_ARN,
    DLQ_URL,
    QUEUE_URL,
    REGION,
    Emulator,
    Message,
    fast_moto_projection,
    simulated_retry_sleeps,
    task_state_event,
)
from harness.bench.model import Actor, AwsModel, Sim

TABLE = "airflow-tasks"
BUS = "airflow-ecs-event-executor-events"
TASK_DEFINITION = f"arn:aws:ecs:{REGION}:123456789012:task-definition/airflow-worker:1"
PARALLELISM = 1_000_000  # the bench measures executors, not Airflow's parallelism limit
_WARM_UP_TASK: dict[str, Any] = {
    "taskArn": f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{'f' * 32}",
    "clusterArn": CLUSTER_ARN,
    "lastStatus": "RUNNING",
    "desiredStatus": "RUNNING",
    "version": 3,
    "group": "family:airflow-worker",
    "launchType": "FARGATE",
    "startedBy": "airflow-ecs-event-executor",
    "overrides": {"containerOverrides": []},
    "containers": [],
}

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Ours: [ecs_event_executor]
    "AIRFLOW__ECS_EVENT_EXECUTOR__QUEUE_URL": QUEUE_URL,
    "AIRFLOW__ECS_EVENT_EXECUTOR__TABLE_NAME": TABLE,
    "AIRFLOW__ECS_EVENT_EXECUTOR__REGION_NAME": REGION,
    "AIRFLOW__ECS_EVENT_EXECUTOR__CONN_ID": "none",
    # Reference: [aws_ecs_executor], the same launch settings.
    "AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER": CLUSTER,
    "AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME": "base",
    "AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION": TASK_DEFINITION,
    "AIRFLOW__AWS_ECS_EXECUTOR__LAUNCH_TYPE": "FARGATE",
    "AIRFLOW__AWS_ECS_EXECUTOR__SUBNETS": "subnet-0bench",
    "AIRFLOW__AWS_ECS_EXECUTOR__SECURITY_GROUPS": "sg-0bench",
    "AIRFLOW__AWS_ECS_EXECUTOR__ASSIGN_PUBLIC_IP": "False",
    "AIRFLOW__AWS_ECS_EXECUTOR__REGION_NAME": REGION,
    "AIRFLOW__AWS_ECS_EXECUTOR__CHECK_HEALTH_ON_STARTUP": "False",
    # The Lambdas (as the stack sets them).
    env_vars.TASKS_TABLE_NAME: TABLE,
    env_vars.CLUSTER: CLUSTER,
    env_vars.TASK_DEFINITION: TASK_DEFINITION,
    env_vars.CONTAINER_NAME: "base",
    env_vars.LAUNCH_TYPE: "FARGATE",
    env_vars.SUBNETS: "subnet-0bench",
    env_vars.SECURITY_GROUPS: "sg-0bench",
    env_vars.ASSIGN_PUBLIC_IP: "false",
    env_vars.EVENT_BUS_NAME: BUS,
    env_vars.LAUNCH_QUEUE_URL: QUEUE_URL,
    env_vars.DEAD_LETTER_QUEUE_URL: DLQ_URL,
    # The stack's levels: the bench counts the bytes the handlers print (Lambda ingests them; see
    # captured_log_bytes), so they print what they would in AWS: INFO lines and EMF metrics.
    env_vars.POWERTOOLS_METRICS_DISABLED: "false",
    env_vars.POWERTOOLS_LOG_LEVEL: "INFO",
    env_vars.POWERTOOLS_METRICS_NAMESPACE: "Bench",
}


def prepare_environment() -> None:
    """Set what Airflow, boto3 and the handlers read at import; call before importing any of them."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "bench-only-secret")
    os.environ.update(_ENV)


class _ByteCounter(io.TextIOBase):
    """A text stream that keeps only the number of UTF-8 bytes written to it."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)


@contextlib.contextmanager
def captured_log_bytes() -> Iterator[list[int]]:
    """Count what the handlers print during one invocation, as Lambda ingests it (the stack's JSON format with the
    system level at WARN: no START/END/REPORT lines): their Powertools loggers' JSON lines and the EMF metrics
    Powertools prints. The output itself is dropped. Yields a one-item list holding the count once done."""
    from lambdas.launcher import handler as launcher_handler
    from lambdas.status import handler as status_handler

    counter = _ByteCounter()
    handlers = [m.logger.registered_handler for m in (launcher_handler, status_handler)]
    streams = [h.setStream(counter) for h in handlers]
    # The bench silences logging around the run (its report is the output): the handlers log as in AWS here.
    silenced = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    total = [0]
    try:
        with contextlib.redirect_stdout(counter), contextlib.redirect_stderr(io.StringIO()):
            yield total
    finally:
        logging.disable(silenced)
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)
        total[0] = counter.bytes


# ---------------------------------------------------------------------------------------------- workloads


def make_workloads(count: int, prefix: str = "bench") -> list[Any]:
    """Return ``count`` ExecuteTask workloads built from real (not persisted) TaskInstances, as the scheduler does."""
    from airflow.executors.workloads import BundleInfo, ExecuteTask
    from airflow.models.taskinstance import TaskInstance
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("bench", schedule=None) as dag:
        EmptyOperator(task_id="work")
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("work")
    workloads = []
    for i in range(count):
        ti = TaskInstance(task=task, run_id=f"{prefix}-{i:05d}", dag_version_id=uuid.uuid4())
        ti.try_number = 1
        workloads.append(
            ExecuteTask.make(ti, dag_rel_path=Path("bench.py"), bundle_info=BundleInfo(name="dags-folder"))
        )
    return workloads


# ------------------------------------------------------------------------------------------------ records


@dataclass
class LoopRecord:
    """One scheduler loop's executor heartbeat."""

    started: float
    blocking: float  # modelled waits + the executor's own CPU
    cpu: float
    waited: float
    requests: int
    by_operation: Counter[str]
    queued: int


@dataclass
class LambdaLedger:
    invocations: int = 0
    records: int = 0
    log_bytes: int = 0  # what the handler printed (its JSON log lines at the stack's level, its EMF metrics)
    billed_seconds: float = 0.0
    cpu: float = 0.0


class World:
    """An emulated account with one executor (``ours`` or ``reference``) and, for ours, the control plane."""

    def __init__(self, kind: str, model: AwsModel, *, seed: int = 7) -> None:
        assert kind in ("ours", "reference")
        self.kind = kind
        self.model = model
        self.seed = seed
        self._stack = contextlib.ExitStack()
        self.loops: list[LoopRecord] = []
        self.loop_running = False
        self.pending: list[Any] = []  # workloads the scheduler queues at the next loop
        self.reported: dict[Any, tuple[str, float]] = {}  # Airflow key -> (state, simulated time)
        self.launched: list[float] = []  # RunTask successes, simulated time
        self.launcher = LambdaLedger()
        self.status = LambdaLedger()
        self.failed_keys: set[Any] = set()
        self._thread_cpu: dict[str, float] = {}  # invocation (actor name) -> its threads' CPU so far

    # ---------------------------------------------------------------------------------------- set-up

    def __enter__(self) -> World:
        from ecs_event_executor.control.tasks.schema import table_definition
        from moto import mock_aws

        random.seed(self.seed)
        self._stack.enter_context(mock_aws())
        self.sim = Sim(start=time.time())
        definition = table_definition(TABLE)
        self.emu = Emulator(self.sim, self.model, definition)
        self._stack.enter_context(simulated_retry_sleeps(self.sim))
        self._stack.enter_context(fast_moto_projection())
        with self.emu.free():
            self.emu.client("dynamodb").create_table(**definition)
        self.scheduler = Actor(f"{self.kind}:scheduler", time=self.sim.start)
        self.esm = Actor("launch-queue poller", time=self.sim.start)
        self.status_actor = Actor("status Lambda", time=self.sim.start)  # the warm-up's environment
        self.status_esm = Actor("EventBridge -> status", time=self.sim.start)
        self.status_workers = [
            Actor(f"status Lambda {i}", time=self.sim.start) for i in range(self.model.status_concurrency)
        ]
        self._status_free_at = [self.sim.start] * len(self.status_workers)
        self.workers = [
            Actor(f"launcher Lambda {i}", time=self.sim.start)
            for i in range(self.model.launcher_max_concurrency)
        ]
        self._free_at = [self.sim.start] * len(self.workers)
        self._poll_at: float | None = None
        self.emu.ecs.on_run.append(self._task_started)
        if self.kind == "ours":
            self._start_control_plane()
            self.executor = self._our_executor()
        else:
            self.executor = self._reference_executor()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def actors(self) -> list[Actor]:
        return [
            self.scheduler,
            self.esm,
            self.status_actor,
            self.status_esm,
            *self.status_workers,
            *self.workers,
        ]

    def _our_executor(self) -> Any:
        from ecs_event_executor.executor import EcsEventExecutor

        executor = EcsEventExecutor(
            parallelism=PARALLELISM,
            client_factory=self.emu.client,
            clock=self.sim.clock,
            sleep=lambda _seconds: None,
            parallel_map=self._send_map,
        )
        executor.job_id = 1
        with self.emu.free(), self._as(self.scheduler):
            executor.start()
            self.emu.launch_queue.messages.clear()  # the health check's ping
        return executor

    def _reference_executor(self) -> Any:
        from airflow.providers.amazon.aws.executors.ecs import ecs_executor

        # The provider reads timezone.utcnow() for its retry schedule: give it simulated time.
        shim = SimpleNamespace(utcnow=lambda: datetime.fromtimestamp(self.sim.clock(), UTC))
        self._stack.enter_context(_patched(ecs_executor, "timezone", shim))
        executor = ecs_executor.AwsEcsExecutor(parallelism=PARALLELISM)
        # Keep the provider's own client (its botocore config and retries); answer it from the emulator.
        self.emu.attach(executor.ecs)
        executor.IS_BOTO_CONNECTION_HEALTHY = True
        return executor

    def _start_control_plane(self) -> None:
        from ecs_event_executor.control import bus as bus_events
        from ecs_event_executor.control.bus import ControlPlaneBus
        from ecs_event_executor.control.launching import Launcher, LauncherSettings
        from ecs_event_executor.control.status_tracking import StatusSettings, StatusTracker
        from ecs_event_executor.control.tasks.table import TaskTable

        self.emu.relaunch_detail_type = bus_events.RELAUNCH_REQUESTED
        # As the stack sets it: each execution environment's share of the account's RunTask rate.
        rate = self.model.run_task_calls_per_second / self.model.launcher_max_concurrency
        settings = LauncherSettings.from_env({**os.environ, env_vars.LAUNCHER_RUN_TASK_RATE: f"{rate:g}"})

        def table() -> TaskTable:
            return TaskTable(TABLE, client=self.emu.lambda_client("dynamodb"), clock=self.sim.clock)

        # One launcher per execution environment, as Lambda keeps one per concurrent invocation.
        self._launchers = [
            Launcher(
                settings,
                ecs=self.emu.lambda_client("ecs"),
                table=table(),
                bus=ControlPlaneBus(BUS, client=self.emu.lambda_client("events")),
                clock=self.sim.clock,
                sleep=lambda seconds: self.sim.wait(self.sim.current, seconds),
                parallel_map=self._parallel_map,
            )
            for _ in self.workers
        ]
        self._parallelism = settings.parallelism
        self._launcher_sqs = self.emu.lambda_client("sqs")
        self._tracker = StatusTracker(
            StatusSettings.from_env(os.environ),
            table=table(),
            bus=ControlPlaneBus(BUS, client=self.emu.lambda_client("events")),
        )
        self.emu.launch_queue.on_send.append(self._wake_poller)
        self.emu.ecs.on_change.append(self._deliver_event)
        self._warm_up(settings)

    def _warm_up(self, settings: Any) -> None:
        """Run the handlers' code paths once, outside the measurement: the model's Lambdas are warm, and the
        first call in this process would otherwise charge its one-time imports to the first batch."""
        from ecs_event_executor.control.messages import PingRequest
        from ecs_event_executor.control.run_task import build_run_task_kwargs

        # moto imports a service's backend on the first request that reaches it (seconds, once per process).
        from moto.backends import get_backend

        from lambdas.launcher import handler as launcher_handler
        from lambdas.status import handler as status_handler

        for service in ("dynamodb", "ecs", "ec2", "sqs", "events", "sts", "iam", "logs"):
            get_backend(service)
        ping = Message("warm-up", PingRequest(owner="bench").to_json(), self.sim.now, self.sim.now, 1)
        with self.emu.free(), self._as(self.workers[0]):
            build_run_task_kwargs(
                settings.launch, launch_id="warm-up", attempt=1, command=["true"], executor_config=None
            )
            for launcher in self._launchers:
                launcher_handler._launcher = launcher
                launcher_handler._sqs = self._launcher_sqs
                launcher_handler.handler(
                    sqs_event([_sqs_record(ping)]), self._context("launcher", self.model.launcher_memory_mb)
                )
            # An event for a task that is not ours, as the rule invokes the function: read, mapped, ignored.
            status_handler._tracker = self._tracker
            event = task_state_event({**_WARM_UP_TASK, "createdAt": self.sim.now})
            status_handler.handler(event, self._context("status", self.model.status_memory_mb))

    @contextlib.contextmanager
    def _as(self, actor: Actor) -> Iterator[None]:
        actor.time = max(actor.time, self.sim.now)
        previous, self.sim.current = self.sim.current, actor
        try:
            yield
        finally:
            self.sim.current = previous

    # ----------------------------------------------------------------------------------- ECS lifecycle

    def _task_started(self, task: dict[str, Any]) -> None:
        now = self.sim.clock()
        self.launched.append(now)
        arn = task["taskArn"]
        ecs = self.emu.ecs
        self.sim.at(now + self.model.fargate_pending_after, lambda: ecs.transition(arn, "PENDING"))
        self.sim.at(now + self.model.fargate_running_after, lambda: ecs.transition(arn, "RUNNING"))

    def finish_task(self, arn: str, when: float, exit_code: int = 0) -> None:
        """Schedule the task's container to exit at ``when``: STOPPING (exit code), DEPROVISIONING, STOPPED."""
        ecs, m = self.emu.ecs, self.model

        def stopping() -> None:
            ecs.transition(
                arn, "STOPPING", desired="STOPPED", exit_code=exit_code, stop_code="EssentialContainerExited"
            )

        self.sim.at(when, stopping)
        self.sim.at(when + m.deprovision_seconds, lambda: ecs.transition(arn, "DEPROVISIONING"))
        self.sim.at(when + m.stopped_after_exit, lambda: ecs.transition(arn, "STOPPED"))

    # ------------------------------------------------------------------------------ the status Lambda

    def _deliver_event(self, task: dict[str, Any]) -> None:
        from ecs_event_executor.control.ecs_state import STARTED_BY, is_status_event

        if task.get("startedBy") != STARTED_BY or not is_status_event(task):
            return  # the stack's rule does not deliver it
        event = task_state_event(task)  # as it is now, not as it will be
        when = self.sim.clock() + self.model.eventbridge_delivery_seconds
        self.sim.at(when, lambda: self._invoke_async(event), self.status_esm)

    def _invoke_async(self, event: dict[str, Any]) -> None:
        """Lambda's asynchronous invoke: the event goes to the first free execution environment (a Lambda request,
        billed; no queue). A function error is retried by Lambda (not modelled: the run has none; R7 covers it)."""
        now = self.sim.clock()
        index = min(range(len(self.status_workers)), key=lambda i: self._status_free_at[i])
        start = max(now, self._status_free_at[index])
        self._status_free_at[index] = float("inf")
        worker = self.status_workers[index]
        self.sim.process(start, lambda: self._invoke_status(index, event), worker)

    def _invoke_status(self, index: int, event: dict[str, Any]) -> None:
        from lambdas.status import handler as status_handler

        worker = self.status_workers[index]
        status_handler._tracker = self._tracker
        self._invoke(
            worker,
            self.status,
            lambda: status_handler.handler(event, self._context("status", self.model.status_memory_mb)),
            self.model.status_memory_mb,
        )
        self.status.records += 1
        self._status_free_at[index] = worker.time

    def _context(self, name: str, memory_mb: int) -> Any:
        return LambdaContext(name, memory_limit_in_mb=memory_mb, timeout_seconds=60.0)

    def _invoke(self, actor: Actor, ledger: LambdaLedger, call: Callable[[], Any], memory_mb: int) -> Any:
        """Run one warm invocation on ``actor``'s clock; bill its duration (modelled waits + own CPU, stretched by
        the function's share of a vCPU).

        Threads of the invocation (``_parallel_map``) wait in parallel but share the function's CPU: it lasts at
        least as long as all their CPU time, stretched, one after another.
        """
        begin = actor.time
        actor.wait(self.model.lambda_invoke_overhead_seconds)
        self._thread_cpu[actor.name] = 0.0
        # The capture's own set-up (swapping streams, lifting the bench's logging silence) is the bench's, not the
        # handler's: only the call is timed.
        with captured_log_bytes() as logged:
            emulator_before = actor.emulator_cpu
            cpu_before = time.thread_time()
            result = call()
            cpu = time.thread_time() - cpu_before - (actor.emulator_cpu - emulator_before)
        actor.time += self.model.lambda_cpu_seconds(cpu, memory_mb)
        total_cpu = cpu + self._thread_cpu.pop(actor.name)
        actor.time = max(
            actor.time,
            begin
            + self.model.lambda_invoke_overhead_seconds
            + self.model.lambda_cpu_seconds(total_cpu, memory_mb),
        )
        if self.emu.charging:
            ledger.invocations += 1
            ledger.log_bytes += logged[0]
            ledger.billed_seconds += actor.time - begin
            ledger.cpu += total_cpu
        return result

    def _parallel_map(self, apply: Callable[[Any], Any], messages: Any) -> list[Any]:
        """The launcher's thread pool on simulated time (see ``_threads``)."""
        return self._threads(apply, messages, self._parallelism, self.model.launcher_memory_mb)

    def _send_map(self, send: Callable[[Any], Any], batches: Any, limit: int) -> list[Any]:
        """The executor's launch-queue sends on simulated time: one scheduler thread per batch, ``limit`` at once."""
        return self._threads(send, batches, limit, None)

    def _threads(
        self, apply: Callable[[Any], Any], items: Any, workers: int, memory_mb: int | None
    ) -> list[Any]:
        """A thread pool on simulated time: each thread is a process on its own clock, forked from the caller's,
        so their requests' latencies overlap as they do in the Lambda or the scheduler. Their CPU does not
        overlap (one process, one GIL; a Lambda's share of a vCPU): the caller resumes no earlier than its fork
        plus all their CPU, one after another. ``memory_mb`` is the Lambda's (None: the scheduler's full core)."""
        if not self.sim.in_process():
            return [apply(m) for m in items]  # the warm-up, outside the measurement
        parent = self.sim.current
        forked_at = parent.time
        count = max(1, min(workers, len(items)))
        threads = [Actor(f"{parent.name} thread {j}", time=parent.time) for j in range(count)]
        results: list[Any] = [None] * len(items)
        spent = [0.0]

        def stretch(cpu: float) -> float:
            return cpu if memory_mb is None else self.model.lambda_cpu_seconds(cpu, memory_mb)

        def run(j: int) -> None:
            thread = threads[j]
            for i in range(j, len(items), count):
                emulator_before = thread.emulator_cpu
                cpu_before = time.thread_time()
                results[i] = apply(items[i])
                cpu = time.thread_time() - cpu_before - (thread.emulator_cpu - emulator_before)
                thread.time += stretch(cpu)
                spent[0] += cpu

        procs = [
            self.sim.process(parent.time, lambda j=j: run(j), thread)  # type: ignore[misc]
            for j, thread in enumerate(threads)
        ]
        self.sim.join(procs)
        for thread in threads:
            parent.absorb(thread)
        parent.time = max(parent.time, *(t.time for t in threads), forked_at + stretch(spent[0]))
        self._thread_cpu[parent.name] = self._thread_cpu.get(parent.name, 0.0) + spent[0]
        return results

    # ---------------------------------------------------------------- the launcher behind the event source

    def _wake_poller(self, when: float) -> None:
        when = max(when, self.sim.now)
        if self._poll_at is not None and self._poll_at <= when:
            return
        self._poll_at = when
        self.sim.at(when, self._poll, self.esm)

    def _poll(self) -> None:
        """The event source: batches of up to 10 visible messages to free execution environments."""
        now = self.sim.clock()
        if self._poll_at is not None and self._poll_at > now:
            return  # superseded by an earlier wake-up that already ran... or a later one is due
        self._poll_at = None
        queue = self.emu.launch_queue
        visible = queue.visible(now)
        if not visible:
            nxt = queue.next_visible_at()
            if nxt is not None:
                self._wake_poller(nxt)
            return
        oldest = min(m.visible_at for m in visible)
        if (
            len(visible) < self.model.launcher_batch_size
            and oldest + self.model.launcher_batching_window > now
        ):
            self._wake_poller(oldest + self.model.launcher_batching_window)
            return
        for i, worker in enumerate(self.workers):
            if self._free_at[i] > now:
                continue
            batch = queue.receive(now, self.model.launcher_batch_size)
            if not batch:
                break
            if self.emu.charging:
                self.esm.requests["sqs.ReceiveMessage"] += 1
                self.esm.sqs_billed += max(1, -(-sum(len(m.body) for m in batch) // (64 * 1024)))
            self._free_at[i] = float("inf")
            self.sim.process(now, lambda i=i, batch=batch: self._invoke_launcher(i, batch), worker)  # type: ignore[misc]
        if queue.visible(now):
            busy_until = min(self._free_at)
            if busy_until != float("inf"):
                self._wake_poller(busy_until)

    @property
    def launcher_idle(self) -> bool:
        """Whether no launcher invocation is running."""
        return all(t != float("inf") for t in self._free_at)

    def _invoke_launcher(self, index: int, batch: list[Any]) -> None:
        from lambdas.launcher import handler as launcher_handler

        worker = self.workers[index]
        launcher_handler._launcher = self._launchers[index]
        launcher_handler._sqs = self._launcher_sqs
        event = sqs_event(_sqs_record(m) for m in batch)
        memory = self.model.launcher_memory_mb
        response = self._invoke(
            worker,
            self.launcher,
            lambda: launcher_handler.handler(event, self._context("launcher", memory)),
            memory,
        )
        self.launcher.records += len(batch)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in batch if m.message_id not in failed]
        for message in done:
            self.emu.launch_queue.delete(message.handle)
        if done and self.emu.charging:
            self.esm.requests["sqs.DeleteMessageBatch"] += 1
            self.esm.sqs_billed += 1
        self._free_at[index] = worker.time
        self._wake_poller(worker.time)

    # ----------------------------------------------------------------------------------- the scheduler

    def start_loop(self) -> None:
        self.loop_running = True
        self.sim.process(max(self.sim.now, self.scheduler.time), self._loop, self.scheduler)

    def _loop(self) -> None:
        if not self.loop_running:
            return
        actor = self.scheduler
        begin = actor.time
        requests_before = Counter(actor.requests)
        waited_before = actor.waited
        emulator_before = actor.emulator_cpu
        self._thread_cpu[actor.name] = 0.0
        cpu_before = time.thread_time()
        queued = len(self.pending)
        for workload in self.pending:
            self.executor.queue_workload(workload, session=None)
        self.pending = []
        self.executor.heartbeat()
        cpu = time.thread_time() - cpu_before - (actor.emulator_cpu - emulator_before)
        actor.time += cpu
        cpu += self._thread_cpu.pop(actor.name)  # the send threads' (their time is in the clock already)
        self._collect_states(actor.time)
        if self.emu.charging:
            ops = actor.requests - requests_before
            self.loops.append(
                LoopRecord(
                    begin,
                    actor.time - begin,
                    cpu,
                    actor.waited - waited_before,
                    sum(ops.values()),
                    ops,
                    queued,
                )
            )
        self.sim.process(actor.time + self.model.scheduler_idle_sleep_seconds, self._loop, actor)

    def _collect_states(self, now: float) -> None:
        for key, (state, _info) in self.executor.get_event_buffer().items():
            state = str(state)
            if state in ("success", "failed") or key not in self.reported:
                self.reported[key] = (state, now)
            if state == "failed":
                self.failed_keys.add(key)

    # -------------------------------------------------------------------------------------- helpers

    def airflow_key_of(self, task: dict[str, Any]) -> Any:
        """Return the Airflow key an ECS task runs, as this world's executor knows it."""
        if self.kind == "reference":
            return self.executor.active_workers.arn_to_key.get(task["taskArn"])
        from ecs_event_executor.control.ecs_state import LAUNCH_ID_ENV

        env = {
            e["name"]: e["value"]
            for c in task["overrides"].get("containerOverrides", [])
            for e in c.get("environment", [])
        }
        return self.executor.tracked_launches.get(env.get(LAUNCH_ID_ENV, ""))

    def run_for(self, seconds: float) -> None:
        end = self.sim.now + seconds
        self.sim.run_until(lambda: self.sim.now >= end, limit=end - self.sim.start)


def _sqs_record(message: Message, queue_url: str = QUEUE_URL) -> dict[str, Any]:
    """Return the Lambda SQS record for a message of a modelled queue (the launch queue)."""
    sent = str(int(message.sent_at * 1000))
    return sqs_record(
        message_id=message.message_id,
        receipt_handle=message.handle,
        body=message.body,
        queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}",
        receive_count=message.receive_count,
        sent_timestamp=sent,
        first_receive_timestamp=sent,
    )


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
