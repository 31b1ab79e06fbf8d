"""The local ECS runner: plays ECS (Fargate) for the tasks the launcher started in moto.

For each task with ``startedBy`` = the control plane's mark it runs the Airflow container's command (from the
task's container overrides: command and environment) as a local process, at most ``concurrency`` at a time, and
publishes "ECS Task State Change" events to the default bus in the documented shape with an increasing
``detail.version``: PROVISIONING, PENDING, RUNNING, STOPPING and DEPROVISIONING (exit code known), STOPPED (exit
code, stopCode EssentialContainerExited). A StopTask (moto sets desiredStatus STOPPED) kills the process and ends in
STOPPED with stopCode UserInitiated. A process SIGKILLed by something else (the kernel's OOM killer on ECS) ends
with exit code 137 and the container reason ``OutOfMemoryError``, as ECS reports it. The container's output goes to
CloudWatch Logs under the awslogs stream ``{prefix}/{container}/{task id}``.

Fault injection (tests): ``shuffle_events`` delays each event by a random amount so they arrive out of order,
``duplicate_events`` publishes each one twice, ``hold_first_launch`` leaves the first ECS task of every Airflow
task key in PROVISIONING until it is stopped (a task stuck in queued).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY
from ecs_event_executor.control.workload_guard import CLI_PREFIX

from harness.aws_shapes import ecs_container, ecs_task_detail, task_state_change

log = logging.getLogger(__name__)

# The container reason ECS gives a container the kernel killed for memory (Amazon ECS stopped task error messages).
OUT_OF_MEMORY = "OutOfMemoryError: Container killed due to memory usage"

# AWS limits the number of ARNs in one DescribeTasks call.
DESCRIBE_BATCH = 100
# ECS waits stopTimeout (30 s by default) between SIGTERM and SIGKILL; locally a few seconds is plenty.
STOP_TIMEOUT_SECONDS = 5.0
# How far apart shuffled events may land, and how late a duplicate may come.
SHUFFLE_JITTER_SECONDS = 1.5
# CloudWatch Logs takes at most 10,000 events per PutLogEvents call; flush well before that.
LOG_FLUSH_LINES = 500
LOG_FLUSH_SECONDS = 1.0


@dataclass
class Faults:
    """Switches that make the local AWS misbehave the ways real AWS may."""

    duplicate_deliveries: bool = False  # every SQS batch is handed to the launcher twice
    shuffle_events: bool = False
    duplicate_events: bool = False
    hold_first_launch: bool = False


class EventEmitter:
    """Publish ECS events to the default bus, in order, or shuffled and duplicated when asked to."""

    def __init__(self, events_client: Any, faults: Faults, *, seed: int | None = None) -> None:
        self._events = events_client
        self._faults = faults
        self._rng = random.Random(seed)
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self.published = 0
        self._thread = threading.Thread(target=self._run, name="ecs-events", daemon=True)
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._cond:
            due = now + (self._rng.uniform(0, SHUFFLE_JITTER_SECONDS) if self._faults.shuffle_events else 0)
            heapq.heappush(self._heap, (due, next(self._seq), event))
            if self._faults.duplicate_events:
                late = now + self._rng.uniform(0, 2 * SHUFFLE_JITTER_SECONDS)
                heapq.heappush(self._heap, (late, next(self._seq), event))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped and not self._heap:
                    return
                batch: list[dict[str, Any]] = []
                while self._heap and self._heap[0][0] <= time.monotonic() and len(batch) < 10:
                    batch.append(heapq.heappop(self._heap)[2])
            if batch:
                self._put(batch)

    def _put(self, batch: list[dict[str, Any]]) -> None:
        entries = [
            {
                "Source": e["source"],
                "DetailType": e["detail-type"],
                "Detail": json.dumps(e["detail"]),
                "Resources": e["resources"],
            }
            for e in batch
        ]
        for attempt in range(5):
            try:
                resp = self._events.put_events(Entries=entries)
                if not resp.get("FailedEntryCount"):
                    self.published += len(entries)
                    return
            except Exception:
                log.warning("put_events failed (attempt %d)", attempt + 1, exc_info=True)
            time.sleep(0.2 * (attempt + 1))
        log.error("dropped %d ECS events after retries", len(entries))

    def drain(self, timeout: float) -> None:
        """Wait until every queued event was published (or ``timeout``), then stop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._heap:
                    break
            time.sleep(0.05)
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))


@dataclass
class LocalTask:
    """One ECS task as the runner plays it."""

    arn: str
    described: dict[str, Any]
    command: list[str]
    environment: dict[str, str]
    version: int = 0
    last_status: str = "PROVISIONING"
    held: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started_at: float | None = None
    stopping_since: float | None = None
    stop_reason: str | None = None
    finished: bool = False
    log_thread: threading.Thread | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def launch_id(self) -> str:
        return self.environment.get(LAUNCH_ID_ENV, "")

    @property
    def attempt(self) -> int:
        return int(self.environment.get(ATTEMPT_ENV, "1"))

    def key_part(self) -> str:
        """The Airflow try this task runs, the same for every queueing of it (launch ids may be pre-assigned
        UUIDs, so they say nothing about the try)."""
        ti = workload_ti(self.command)
        if ti:
            return json.dumps([ti.get(k) for k in ("dag_id", "task_id", "run_id", "map_index", "try_number")])
        return self.launch_id


def workload_ti(command: list[str]) -> dict[str, Any]:
    """Return the task instance fields of an Airflow workload command (for the journal), if it is one.

    Airflow 2.11's ``airflow tasks run <dag> <task> <run> --local ...`` names no try number (None here).
    """
    if command[:3] == list(CLI_PREFIX) and len(command) >= 6:
        ti: dict[str, Any] = {
            "dag_id": command[3],
            "task_id": command[4],
            "run_id": command[5],
            "map_index": -1,
            "try_number": None,
        }
        with contextlib.suppress(ValueError, IndexError):
            ti["map_index"] = int(command[command.index("--map-index", 6) + 1])
        return ti
    try:
        payload = json.loads(command[command.index("--json-string") + 1])
        ti = payload.get("ti", {})
        return {k: ti.get(k) for k in ("dag_id", "task_id", "run_id", "map_index", "try_number")}
    except (ValueError, IndexError, AttributeError):
        return {}


class LocalEcsRunner:
    """Watch moto for the control plane's ECS tasks and run them as local processes."""

    def __init__(
        self,
        client: Callable[[str], Any],
        *,
        cluster_arn: str,
        container_name: str,
        log_group: str,
        log_stream_prefix: str,
        container_env: Mapping[str, str],
        journal: Callable[[dict[str, Any]], None],
        faults: Faults | None = None,
        concurrency: int = 2,
        poll_seconds: float = 0.5,
    ) -> None:
        self._ecs = client("ecs")
        self._logs = client("logs")
        self.cluster_arn = cluster_arn
        self.container_name = container_name
        self.log_group = log_group
        self.log_stream_prefix = log_stream_prefix
        self.container_env = dict(container_env)
        self.faults = faults or Faults()
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._journal = journal
        self.emitter = EventEmitter(client("events"), self.faults)
        self.tasks: dict[str, LocalTask] = {}
        self._waiting: deque[LocalTask] = deque()
        self._held_keys: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ecs-runner", daemon=True)

    # ------------------------------------------------------------------ loop

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("runner step failed; retrying")
            self._stop.wait(self.poll_seconds)

    def step(self) -> None:
        """One round: discover new tasks, honour StopTask, start what fits, finish what exited."""
        self._discover()
        self._check_stops()
        self._start_waiting()
        self._reap()

    def _list_arns(self) -> list[str]:
        arns: list[str] = []
        kwargs: dict[str, Any] = {"cluster": self.cluster_arn, "startedBy": STARTED_BY}
        while True:
            resp = self._ecs.list_tasks(**kwargs)
            arns.extend(resp.get("taskArns", []))
            if not resp.get("nextToken"):
                return arns
            kwargs["nextToken"] = resp["nextToken"]

    def _describe(self, arns: list[str]) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        for i in range(0, len(arns), DESCRIBE_BATCH):
            resp = self._ecs.describe_tasks(cluster=self.cluster_arn, tasks=arns[i : i + DESCRIBE_BATCH])
            tasks.extend(resp.get("tasks", []))
        return tasks

    def _discover(self) -> None:
        new = [arn for arn in self._list_arns() if arn not in self.tasks]
        for described in self._describe(new):
            ours: dict[str, Any] = next(
                (
                    c
                    for c in described.get("overrides", {}).get("containerOverrides", [])
                    if c.get("name") == self.container_name
                ),
                {},
            )
            task = LocalTask(
                arn=described["taskArn"],
                described=described,
                command=list(ours.get("command") or []),
                environment={kv["name"]: kv["value"] for kv in ours.get("environment", [])},
            )
            self.tasks[task.arn] = task
            self._event(task, "PROVISIONING")
            if self.faults.hold_first_launch and task.key_part() not in self._held_keys:
                self._held_keys.add(task.key_part())
                task.held = True
                self._record(task, "held")
                continue
            self._event(task, "PENDING")
            self._waiting.append(task)
            self._record(task, "discovered")

    def _check_stops(self) -> None:
        active = [t.arn for t in self.tasks.values() if not t.finished and t.stopping_since is None]
        for described in self._describe(active):
            if described.get("desiredStatus") != "STOPPED":
                continue
            task = self.tasks[described["taskArn"]]
            task.stop_reason = described.get("stoppedReason") or "Task stopped by user"
            task.stopping_since = time.monotonic()
            self._record(task, "stop_requested", reason=task.stop_reason)
            if task.proc is None:
                # Never started: no container ran, so no exit code and no startedAt.
                with contextlib.suppress(ValueError):
                    self._waiting.remove(task)
                self._finish(task, exit_code=None, stop_code="UserInitiated", reason=task.stop_reason)
            else:
                self._event(
                    task,
                    "DEACTIVATING",
                    desired="STOPPED",
                    stop_code="UserInitiated",
                    reason=task.stop_reason,
                )
                _signal_group(task.proc, signal.SIGTERM)

    def _start_waiting(self) -> None:
        while self._waiting and self._running_count() < self.concurrency:
            task = self._waiting.popleft()
            self._launch(task)

    def _running_count(self) -> int:
        return sum(1 for t in self.tasks.values() if t.proc is not None and not t.finished)

    def _launch(self, task: LocalTask) -> None:
        stream = self.stream_name(task)
        with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
            self._logs.create_log_stream(logGroupName=self.log_group, logStreamName=stream)
        env = {**self.container_env, **task.environment, "ECS_CONTAINER_METADATA_URI_V4": ""}
        try:
            task.proc = subprocess.Popen(
                task.command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            # The image cannot run the command: ECS reports this as a container that failed to start.
            self._record(task, "start_failed", reason=str(exc))
            self._finish(
                task,
                exit_code=None,
                stop_code="TaskFailedToStart",
                reason=f"CannotStartContainerError: {exc}",
            )
            return
        task.started_at = time.time()
        task.log_thread = threading.Thread(
            target=self._ship_logs, args=(task.proc.stdout, stream), name=f"logs-{task.task_id}", daemon=True
        )
        task.log_thread.start()
        self._event(task, "RUNNING")
        self._record(task, "started", pid=task.proc.pid, stream=stream)

    def _reap(self) -> None:
        for task in list(self.tasks.values()):
            if task.proc is None or task.finished:
                continue
            code = task.proc.poll()
            if code is None:
                if task.stopping_since and time.monotonic() - task.stopping_since > STOP_TIMEOUT_SECONDS:
                    _signal_group(task.proc, signal.SIGKILL)
                continue
            _signal_group(task.proc, signal.SIGKILL)  # whatever the command left behind in its group
            if task.log_thread is not None:
                task.log_thread.join(timeout=5)
            exit_code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
            if task.stopping_since is not None:
                self._finish(task, exit_code=exit_code, stop_code="UserInitiated", reason=task.stop_reason)
            else:
                self._finish(
                    task,
                    exit_code=exit_code,
                    stop_code="EssentialContainerExited",
                    reason="Essential container in task exited",
                    # A SIGKILL nobody asked for is what the kernel's OOM killer sends: ECS reports it so.
                    container_reason=OUT_OF_MEMORY if code == -signal.SIGKILL else None,
                )

    def _finish(
        self,
        task: LocalTask,
        *,
        exit_code: int | None,
        stop_code: str,
        reason: str | None,
        container_reason: str | None = None,
    ) -> None:
        task.finished = True
        steps = ("STOPPING", "DEPROVISIONING", "STOPPED") if task.started_at is not None else ("STOPPED",)
        for step in steps:
            self._event(
                task,
                step,
                desired="STOPPED",
                exit_code=exit_code,
                stop_code=stop_code,
                reason=reason,
                container_reason=container_reason,
            )
        self._record(task, "finished", exit_code=exit_code, stop_code=stop_code)

    # ----------------------------------------------------------------- events

    def _event(
        self,
        task: LocalTask,
        last_status: str,
        *,
        desired: str = "RUNNING",
        exit_code: int | None = None,
        stop_code: str | None = None,
        reason: str | None = None,
        container_reason: str | None = None,
    ) -> None:
        task.version += 1
        task.last_status = last_status
        container = ecs_container(
            task.arn,
            self.container_name,
            last_status="STOPPED"
            if last_status in ("STOPPING", "DEPROVISIONING", "STOPPED")
            else ("RUNNING" if task.started_at else "PENDING"),
            exit_code=exit_code,
            container_arn=f"{task.arn.replace(':task/', ':container/')}/{uuid.uuid5(uuid.NAMESPACE_URL, task.arn)}",
            reason=container_reason,
        )
        detail = ecs_task_detail(
            task.described,
            last_status=last_status,
            version=task.version,
            containers=[container],
            desired_status=desired,
            started_at=task.started_at,
            stop_code=stop_code,
            stopped_reason=reason,
            cluster_arn=self.cluster_arn,
            started_by=STARTED_BY,
        )
        self.emitter.emit(task_state_change(detail))

    # ------------------------------------------------------------------- logs

    def stream_name(self, task: LocalTask) -> str:
        """The awslogs stream: ``prefix/container-name/ecs-task-id``."""
        prefix = f"{self.log_stream_prefix}/" if self.log_stream_prefix else ""
        return f"{prefix}{self.container_name}/{task.task_id}"

    def _ship_logs(self, stdout: IO[bytes] | None, stream: str) -> None:
        if stdout is None:
            return
        pending: list[dict[str, Any]] = []
        last_flush = time.monotonic()
        for raw in iter(stdout.readline, b""):
            pending.append(
                {"timestamp": int(time.time() * 1000), "message": raw.decode(errors="replace").rstrip("\n")}
            )
            if len(pending) >= LOG_FLUSH_LINES or time.monotonic() - last_flush > LOG_FLUSH_SECONDS:
                self._put_logs(stream, pending)
                pending, last_flush = [], time.monotonic()
        self._put_logs(stream, pending)

    def _put_logs(self, stream: str, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        try:
            self._logs.put_log_events(logGroupName=self.log_group, logStreamName=stream, logEvents=events)
        except Exception:
            log.warning("could not write %d log lines to %s", len(events), stream, exc_info=True)

    # ---------------------------------------------------------------- journal

    def _record(self, task: LocalTask, kind: str, **extra: Any) -> None:
        self._journal(
            {
                "kind": kind,
                "at": time.time(),
                "arn": task.arn,
                "launch_id": task.launch_id,
                "attempt": task.attempt,
                "ti": workload_ti(task.command),
                **extra,
            }
        )

    # ------------------------------------------------------------------- stop

    def stop(self) -> None:
        """Stop watching and kill every local task process (the machine 'goes away')."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for task in self.tasks.values():
            if task.proc is not None and task.proc.poll() is None:
                _signal_group(task.proc, signal.SIGKILL)
        self.emitter.drain(timeout=5)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def append_jsonl(path: Path) -> Callable[[dict[str, Any]], None]:
    """Return a thread-safe appender of JSON lines to ``path``."""
    lock = threading.Lock()

    def write(record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str)
        with lock, open(path, "a") as fh:
            fh.write(line + "\n")

    return write
