"""Turn launch-queue messages into ECS tasks: exactly one task per launch attempt, whatever SQS redelivers.

Two guards make a redelivered or duplicated message harmless: a conditional claim (a lease) on the task item, so
only one launcher calls RunTask for an attempt at a time and none after the task is recorded; and a
deterministic RunTask ``clientToken``, so a launcher that crashed between RunTask and recording the task gets the
same task back when the message returns.

A batch's messages are applied concurrently (``LAUNCH_PARALLELISM`` threads), so RunTask's latency overlaps
instead of adding up; every RunTask call first takes a token from the environment's pacer (``pacing.py``), so
the launchers together stay inside the account's RunTask rate.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_event_executor.control import bus as bus_events
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.aws_clients import client_config, lambda_client
from ecs_event_executor.control.aws_errors import (
    ErrorKind,
    classify,
    describe_failures,
    error_code,
    error_text,
    run_task_failure_is_retryable,
)
from ecs_event_executor.control.bus import ControlPlaneBus
from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY, airflow_environment
from ecs_event_executor.control.environment import LambdaEnvironment
from ecs_event_executor.control.executor_config import ExecutorConfigError, check_image, cost_tags
from ecs_event_executor.control.health import HealthNotes
from ecs_event_executor.control.launch_profiles import (
    DEFAULT_PROFILE,
    LaunchProfile,
    UnknownQueue,
    profile_for_queue,
)
from ecs_event_executor.control.messages import (
    AdoptRequest,
    AnyMessage,
    CancelRequest,
    LaunchRequest,
    MalformedMessage,
    PingRequest,
    RelaunchRequest,
    parse_message,
)
from ecs_event_executor.control.pacing import Pacer
from ecs_event_executor.control.run_task import LaunchConfig, build_run_task_kwargs
from ecs_event_executor.control.task_definitions import DerivedTaskDefinitions, RegistrationInProgress
from ecs_event_executor.control.tasks.item import Claim, ClaimOutcome, TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.registrations import Registrations
from ecs_event_executor.control.tasks.schema import DEFAULT_FINISHED_TTL_SECONDS
from ecs_event_executor.control.tasks.table import LaunchIdTaken, TaskTable
from ecs_event_executor.control.workload_guard import WorkloadRefused, check_workload_command

log = logging.getLogger(__name__)

# The longest a launch waits in the Lambda for a RunTask token before its message is put back instead (the
# function's timeout is 60 s; at the stack's default share a batch of 10 waits at most 1 s).
MAX_PACING_WAIT_SECONDS = 20.0
# Used when the environment does not set LAUNCH_LEASE_SECONDS, LAUNCH_BACKOFF_MAX_SECONDS, LAUNCH_PARALLELISM.
DEFAULT_LEASE_SECONDS = 60
DEFAULT_BACKOFF_MAX_SECONDS = 120
DEFAULT_PARALLELISM = 10
# The ECS client's standard retries and timeouts (control/aws_clients.py): one RunTask, retries included, ends
# well inside the function's 60 s.
ECS_CLIENT_CONFIG = client_config("ecs")
# A RunTask is started only with at least this much of the invocation left; later ones are handed back to the
# queue unstarted, so a slow ECS API never times the function out and redelivers the whole batch.
RUN_TASK_TIME_NEEDED_SECONDS = 40.0
# A retried message that SQS has delivered this often is replaced by a fresh copy, so a launch that is throttled
# for hours never reaches the queue's maxReceiveCount (50, the redrive that catches real poison).
RECYCLE_AFTER_RECEIVES = 20


class RetryLater(Exception):
    """The message should come back after ``delay_seconds`` (throttling, capacity, a lease held elsewhere)."""

    def __init__(self, reason: str, delay_seconds: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = delay_seconds


class LaunchRefused(MalformedMessage):
    """A well-formed message the launcher will not apply (a command that is not the Airflow workload of its key,
    another team's message, a launch id taken): a poison message, sent to the DLQ with this reason."""


# How long the running invocation has left, in seconds (the handler passes the Lambda context's countdown).
TimeLeft = Callable[[], float]


class Result(StrEnum):
    """What the launcher did with one message (logged and counted as a metric)."""

    LAUNCHED = "Launched"
    DUPLICATE = "Duplicate"
    LAUNCH_FAILED = "LaunchFailed"
    EXPIRED = "Expired"
    CANCELLED = "Cancelled"
    STOP_REQUESTED = "StopRequested"
    ADOPTED = "Adopted"
    IGNORED = "Ignored"


# One message of a batch, (body, receive count), and what applying it gave: a result or the exception it raised.
BatchMessage = tuple[str, int]
Outcome = Result | Exception
# How a batch's messages are applied: (apply one, the messages) -> outcomes in order. The default runs threads;
# the benchmark passes one that runs them on simulated time.
ParallelMap = Callable[[Callable[[BatchMessage], Outcome], Sequence[BatchMessage]], list[Outcome]]


@dataclass(frozen=True)
class LauncherSettings:
    """The launcher's whole configuration, read once from its environment."""

    launch: LaunchConfig
    table_name: str
    event_bus_name: str | None = None
    # Publish routine notifications (a task launched) too, not only failures and relaunches.
    publish_all_events: bool = False
    finished_ttl_seconds: int = DEFAULT_FINISHED_TTL_SECONDS
    # How long one launcher may hold an attempt before another may take it over (covers RunTask + the write).
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    backoff_base_seconds: int = 2
    backoff_max_seconds: int = DEFAULT_BACKOFF_MAX_SECONDS
    # Messages of one batch applied at once (threads); 1 applies them one after another.
    parallelism: int = DEFAULT_PARALLELISM
    # RunTask calls per second this execution environment may make (None: unpaced). The stack sets the account's
    # RunTask rate divided by the event source's maximum concurrency.
    run_task_rate: float | None = None
    # The one Airflow team this stack serves (TEAM); None: messages of any team (each acts within its own).
    team: str | None = None
    # Launch profiles by name (LAUNCH_PROFILES; a task's queue picks one) and what an unknown queue gets.
    profiles: Mapping[str, LaunchProfile] = field(default_factory=dict)
    unknown_queue: str = "default"
    # Images a task's executor_config may name (ALLOWED_IMAGES patterns); empty: none.
    allowed_images: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LauncherSettings:
        """Read the launcher's environment; a missing or bad variable raises EnvironmentVariableError naming it."""
        read = LambdaEnvironment.read(env)
        return cls(
            launch=LaunchConfig.from_environment(read),
            table_name=read.require(env_vars.TASKS_TABLE_NAME),
            event_bus_name=read.event_bus_name,
            publish_all_events=read.publish_all_events,
            finished_ttl_seconds=read.finished_ttl_seconds or DEFAULT_FINISHED_TTL_SECONDS,
            lease_seconds=read.launch_lease_seconds or DEFAULT_LEASE_SECONDS,
            backoff_max_seconds=read.launch_backoff_max_seconds or DEFAULT_BACKOFF_MAX_SECONDS,
            parallelism=read.launch_parallelism or DEFAULT_PARALLELISM,
            run_task_rate=read.launcher_run_task_rate,
            team=read.team,
            profiles=read.launch_profiles,
            unknown_queue=read.unknown_queue,
            allowed_images=read.allowed_images,
        )

    def launch_config(self, queue: str | None) -> tuple[str, LaunchConfig]:
        """Return the profile a task on ``queue`` launches with and its configuration; UnknownQueue if refused."""
        name = profile_for_queue(
            queue, self.profiles, unknown=self.unknown_queue, setting=env_vars.UNKNOWN_QUEUE
        )
        if name == DEFAULT_PROFILE:
            return name, self.launch
        return name, self.launch.for_profile(self.profiles[name])


class Launcher:
    """Apply launch-queue messages. Clients are injectable; defaults are created on first use."""

    def __init__(
        self,
        settings: LauncherSettings,
        *,
        ecs: Any | None = None,
        table: TaskTable | None = None,
        bus: ControlPlaneBus | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        parallel_map: ParallelMap | None = None,
        health: HealthNotes | None = None,
    ) -> None:
        self.settings = settings
        self._ecs = ecs
        # Notes RunTask's verdicts on the path to ECS (check_health reads them); None: not noted.
        self.health = health
        self.table = table or TaskTable(
            settings.table_name, finished_ttl_seconds=settings.finished_ttl_seconds, clock=clock
        )
        self.bus = bus or ControlPlaneBus(settings.event_bus_name, publish_all=settings.publish_all_events)
        self._clock = clock
        self._map = parallel_map or self._threaded_map
        self._time_left: TimeLeft | None = None
        self.pacer = (
            Pacer(settings.run_task_rate, clock=clock, sleep=sleep) if settings.run_task_rate else None
        )
        self.task_definitions = DerivedTaskDefinitions(
            Registrations(settings.table_name, client_factory=lambda: self.table.client, clock=clock),
            lambda: self.ecs,
            container_name=settings.launch.container_name,
            clock=clock,
        )

    @property
    def ecs(self) -> Any:
        if self._ecs is None:
            self._ecs = lambda_client("ecs")
        return self._ecs

    def handle_many(
        self, messages: Sequence[BatchMessage], *, time_left: TimeLeft | None = None
    ) -> list[Outcome]:
        """Apply a batch of (body, receive count), concurrently; return each one's result or the exception it raised
        (MalformedMessage, RetryLater, or an AWS error), in order.

        With ``time_left`` (the invocation's remaining seconds), a launch that could not finish its RunTask before
        the invocation ends is handed back to the queue unstarted.
        """
        if not messages:
            return []
        self._time_left = time_left
        # Clients come from one shared botocore session: create them before the threads
        # (the bus's only if it will publish).
        _ = self.ecs, self.table.client, self.task_definitions.registrations.client
        if self.bus.bus_name:
            _ = self.bus.client

        def apply(message: BatchMessage) -> Outcome:
            try:
                return self.handle(message[0], receive_count=message[1])
            except Exception as exc:
                return exc

        return self._map(apply, messages)

    def _threaded_map(
        self, apply: Callable[[BatchMessage], Outcome], messages: Sequence[BatchMessage]
    ) -> list[Outcome]:
        workers = min(self.settings.parallelism, len(messages))
        if workers <= 1:
            return [apply(m) for m in messages]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="launch") as pool:
            return list(pool.map(apply, messages))

    def handle(self, body: str, *, receive_count: int = 1) -> Result:
        """Apply one message body. Raises MalformedMessage (poison) or RetryLater (come back later)."""
        message = parse_message(body)
        self._check_team(message)
        if isinstance(message, LaunchRequest):
            self._check_workload(message)
            return self._launch(message, receive_count)
        if isinstance(message, RelaunchRequest):
            return self._relaunch(message, receive_count)
        if isinstance(message, CancelRequest):
            return self._cancel(message)
        if isinstance(message, AdoptRequest):
            written, _ = self.table.set_owner(message.launch_id, message.owner, team=message.team)
            return Result.ADOPTED if written else Result.IGNORED
        assert isinstance(message, PingRequest)
        return Result.IGNORED

    # ------------------------------------------------------------------ guards

    def _check_team(self, message: AnyMessage) -> None:
        """Refuse a message of another team than the one this stack serves (when it serves one)."""
        wanted = self.settings.team
        team = getattr(message, "team", None)
        if wanted is not None and not isinstance(message, (RelaunchRequest, PingRequest)) and team != wanted:
            raise LaunchRefused(
                f"team: this control plane serves team {wanted!r}, the message names {team!r}"
            )

    def _check_workload(self, request: LaunchRequest) -> None:
        """Run only the Airflow workload of the message's own key; otherwise fail the launch and refuse it."""
        try:
            check_workload_command(request.command, request.key)
        except WorkloadRefused as exc:
            reason = f"refused: {exc}"
            # On the item for the executor and operators (unless the id is another launch's), and in the DLQ.
            self.table.create_refused(request, reason=reason)
            log.warning("launch refused", extra={"launch_id": request.launch_id, "reason": reason})
            raise LaunchRefused(reason) from None

    # ------------------------------------------------------------------ launch

    def _launch(self, request: LaunchRequest, receive_count: int) -> Result:
        try:
            claim = self.table.create_for_launch(request, lease_seconds=self.settings.lease_seconds)
        except LaunchIdTaken as exc:
            raise LaunchRefused(str(exc)) from None
        return self._run_claimed(claim, request, receive_count)

    def _relaunch(self, message: RelaunchRequest, receive_count: int) -> Result:
        claim = self.table.claim_attempt(
            message.launch_id, message.attempt, lease_seconds=self.settings.lease_seconds
        )
        if claim.outcome is not ClaimOutcome.CLAIMED or claim.item is None:
            return self._run_claimed(claim, None, receive_count)
        request = self.table.read_request(message.launch_id)
        if request is None:
            return self._fail(
                claim.item,
                message.attempt,
                "cannot relaunch: the launch request is no longer stored (it is kept until the launch's "
                "deadline, when its workload token expires)",
            )
        return self._run_claimed(claim, request, receive_count)

    def _run_claimed(self, claim: Claim, request: LaunchRequest | None, receive_count: int) -> Result:
        if claim.outcome is ClaimOutcome.DONE:
            return Result.DUPLICATE
        item = claim.item
        assert item is not None
        if claim.outcome is ClaimOutcome.BUSY:
            wait = max(1, int(((item.lease_until or 0) - self._clock() * 1000) / 1000) + 1)
            raise RetryLater(f"attempt {item.attempt} is being launched by another invocation", wait)
        assert request is not None
        return self._run_task(item, request, receive_count)

    def _run_task(self, item: TaskItem, request: LaunchRequest, receive_count: int) -> Result:
        attempt = item.attempt
        if request.launch_deadline and self._clock() > request.launch_deadline.timestamp():
            return self._past_deadline(item, request)
        retry = _Retry(item, attempt, request, receive_count)
        try:
            kwargs = self._run_task_kwargs(item, request)
        except (ExecutorConfigError, UnknownQueue) as exc:
            return self._fail(item, attempt, str(exc))
        except RegistrationInProgress as exc:
            return self._retry(retry, str(exc), exc.delay_seconds)
        except (ClientError, BotoCoreError) as exc:
            # DescribeTaskDefinition / RegisterTaskDefinition for the task's image.
            if classify(exc) is ErrorKind.PERMANENT:
                return self._fail(item, attempt, f"ECS refused the task's image: {error_text(exc)}")
            return self._retry(retry, f"task definition for the image: {error_text(exc)}")
        spare = self._spare_seconds()
        if spare is not None and spare <= 0:
            return self._retry(
                retry, "the launcher invocation is about to time out; handed back unstarted", 1
            )
        max_wait = MAX_PACING_WAIT_SECONDS if spare is None else min(MAX_PACING_WAIT_SECONDS, spare)
        if self.pacer is not None and self.pacer.acquire(max_wait=max_wait) is None:
            # More launches are waiting for RunTask tokens than this invocation should sit through.
            return self._retry(
                retry,
                f"RunTask paced at {self.pacer.rate:g}/s: more launches waiting than fit in {max_wait:g} s",
            )
        try:
            response = self.ecs.run_task(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            existing = conflicting_task(exc)
            if existing is not None:
                # The token already started this attempt's task, with parameters since changed by a deploy: that
                # task is the attempt's; record it and follow its events.
                log.info(
                    "RunTask conflict: the attempt's task exists",
                    extra={"launch_id": item.launch_id, "attempt": attempt, "task_arn": existing},
                )
                return self._record(item, attempt, {"taskArn": existing})
            kind = classify(exc)
            if kind is ErrorKind.PERMANENT:
                if self.health is not None:
                    code = error_code(exc) if isinstance(exc, ClientError) else ""
                    self.health.run_task_refused(self.table, code, error_text(exc))
                return self._fail(item, attempt, f"ECS RunTask refused the task: {error_text(exc)}")
            return self._retry(retry, f"RunTask: {error_text(exc)}")
        tasks = response.get("tasks") or []
        if tasks:
            if self.health is not None:
                self.health.run_task_ok(self.table)
            return self._record(item, attempt, tasks[0])
        failures = response.get("failures") or []
        reason = describe_failures(failures) or "RunTask returned no task and no failure"
        if failures and all(run_task_failure_is_retryable(f) for f in failures):
            return self._retry(retry, f"RunTask capacity: {reason}")
        return self._fail(item, attempt, f"ECS could not place the task: {reason}")

    def _run_task_kwargs(self, item: TaskItem, request: LaunchRequest) -> dict[str, Any]:
        """Build RunTask's arguments: the queue's profile, the task's image (a derived task definition), the
        task's executor_config and the cost tags."""
        _, config = self.settings.launch_config(request.queue)
        image = check_image(
            request.executor_config, self.settings.allowed_images, setting=env_vars.ALLOWED_IMAGES
        )
        task_definition = self.task_definitions.resolve(config.task_definition, image) if image else None
        return build_run_task_kwargs(
            config,
            launch_id=item.launch_id,
            attempt=item.attempt,
            command=request.command,
            executor_config=request.executor_config,
            tags=cost_tags(request.key, request.team),
            task_definition=task_definition,
        )

    def _spare_seconds(self) -> float | None:
        """Return how long this invocation may still wait before a RunTask (None: no limit known)."""
        if self._time_left is None:
            return None
        return self._time_left() - RUN_TASK_TIME_NEEDED_SECONDS

    def _past_deadline(self, item: TaskItem, request: LaunchRequest) -> Result:
        """Handle a launch past its deadline: follow its task if an earlier delivery started one, else hand it back.

        The existing-task check comes first: a launcher that crashed after RunTask (or whose RunTask timed out)
        left a running task that only its redelivered message can record.
        """
        existing = self.find_task(item.launch_id, item.attempt, cluster=self._cluster_of(request))
        if existing is not None:
            return self._record(item, item.attempt, existing)
        assert request.launch_deadline is not None
        reason = (
            f"not started: the launch deadline {request.launch_deadline.isoformat()} passed (the workload's token "
            "would expire before the task could start); handed back to Airflow to requeue"
            + (f" (last launch problem: {item.reason})" if item.reason else "")
        )
        written, current = self.table.expire_launch(item.launch_id, item.attempt, reason=reason)
        log.warning(
            "launch expired", extra={"launch_id": item.launch_id, "attempt": item.attempt, "reason": reason}
        )
        if written:
            self.bus.publish(bus_events.LAUNCH_FAILED, _event_detail(current or item, reason=reason))
        return Result.EXPIRED

    def _cluster_of(self, request: LaunchRequest) -> str:
        """Return the cluster the request's profile launches on (the default one for a queue it refuses)."""
        try:
            return self.settings.launch_config(request.queue)[1].cluster
        except UnknownQueue:
            return self.settings.launch.cluster

    def find_task(self, launch_id: str, attempt: int, *, cluster: str | None = None) -> dict[str, Any] | None:
        """Return the ECS task an earlier delivery started for this attempt, if ECS still lists it.

        Looks through the control plane's tasks (``startedBy``) on ``cluster`` (default: the default profile's),
        running and recently stopped, for the launch marks in the Airflow container's override environment (the
        status path's and the reconciler's reading: a sidecar's environment comes from a task's executor_config
        and must not bind another launch's task to this one). Costs ListTasks and DescribeTasks calls: only used
        past a deadline.
        """
        cluster = cluster or self.settings.launch.cluster
        container_name = self.settings.launch.container_name
        marks = {LAUNCH_ID_ENV: launch_id, ATTEMPT_ENV: str(attempt)}
        for desired in ("RUNNING", "STOPPED"):
            paginator = self.ecs.get_paginator("list_tasks")
            for page in paginator.paginate(cluster=cluster, startedBy=STARTED_BY, desiredStatus=desired):
                arns = page.get("taskArns") or []
                for start in range(0, len(arns), 100):
                    described = self.ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])
                    for task in described.get("tasks") or []:
                        if marks.items() <= airflow_environment(task, container_name).items():
                            return dict(task)
        return None

    def _record(self, item: TaskItem, attempt: int, task: Mapping[str, Any]) -> Result:
        task_arn = task["taskArn"]
        recorded, current = self.table.record_launched(
            item.launch_id,
            attempt,
            task_arn=task_arn,
            cluster_arn=task.get("clusterArn"),
            # The recorded item is only read for the routine notification below.
            returns=self.bus.publishes(routine=True),
        )
        if not recorded and current is not None and current.state in (TaskState.CANCELLED, TaskState.EXPIRED):
            # Revoked, or handed back to Airflow, while RunTask was in flight: the task must not run.
            self._stop(
                task.get("clusterArn") or self.settings.launch.cluster,
                task_arn,
                current.reason or "cancelled",
            )
            return Result.CANCELLED
        # DEBUG: the item holds the task ARN and the handler logs one INFO line per batch; at INFO a line per
        # launch would cost more log ingestion than the launch's own Lambda time (docs/bench.md).
        log.debug("launched", extra={"launch_id": item.launch_id, "attempt": attempt, "task_arn": task_arn})
        self.bus.publish(
            bus_events.TASK_LAUNCHED, _event_detail(current or item, task_arn=task_arn), routine=True
        )
        return Result.LAUNCHED

    def _fail(self, item: TaskItem, attempt: int, reason: str) -> Result:
        written, current = self.table.fail_launch(item.launch_id, attempt, reason=reason)
        log.warning(
            "launch failed", extra={"launch_id": item.launch_id, "attempt": attempt, "reason": reason}
        )
        if written:
            self.bus.publish(bus_events.LAUNCH_FAILED, _event_detail(current or item, reason=reason))
        return Result.LAUNCH_FAILED

    def _retry(self, retry: _Retry, reason: str, delay_seconds: int | None = None) -> Result:
        if delay_seconds is None:
            delay_seconds = self.backoff_seconds(retry.receive_count, request=retry.request)
        self.table.release_lease(
            retry.item.launch_id, retry.attempt, reason=f"retrying: {reason}", retry_in_seconds=delay_seconds
        )
        raise RetryLater(reason, delay_seconds)

    def backoff_seconds(self, receive_count: int, *, request: LaunchRequest | None = None) -> int:
        """Backoff with jitter, capped: spreads retried launches over the RunTask quota.

        For a launch request the delay grows with the message's age (half of it, from ``backoff_base_seconds``
        up to ``backoff_max_seconds``) and never reaches past the launch deadline, so the last try comes before
        it; otherwise (a relaunch) it doubles with each receive.
        """
        if request is not None:
            now = self._clock()
            age = max(0.0, now - request.queued_at.timestamp())
            ceiling = min(
                float(self.settings.backoff_max_seconds),
                max(float(self.settings.backoff_base_seconds), age / 2),
            )
            if request.launch_deadline is not None:
                ceiling = min(ceiling, max(1.0, request.launch_deadline.timestamp() - now))
        else:
            ceiling = min(
                self.settings.backoff_max_seconds,
                self.settings.backoff_base_seconds * 2 ** max(0, receive_count - 1),
            )
        return max(1, int(ceiling * random.uniform(0.5, 1.0)))

    # ------------------------------------------------------------------ cancel

    def _cancel(self, message: CancelRequest) -> Result:
        cancelled, item = self.table.finish_cancelled(message)
        if cancelled:
            return Result.CANCELLED
        if item is None or item.state.terminal:
            return Result.IGNORED
        if item.team != message.team:
            log.warning(
                "cancel of another team's launch ignored",
                extra={"launch_id": message.launch_id, "team": message.team},
            )
            return Result.IGNORED
        if item.task_arn is None:
            # Another invocation holds the lease with RunTask in flight; it stops the task when it sees CANCELLED.
            raise RetryLater("the launch is in flight; cancelling once it is recorded", 2)
        marked, _ = self.table.mark_cancel_requested(item.launch_id, reason=message.reason, team=message.team)
        if not marked:
            return Result.IGNORED
        self._stop(item.cluster_arn or self.settings.launch.cluster, item.task_arn, message.reason)
        return Result.STOP_REQUESTED

    def _stop(self, cluster: str, task_arn: str, reason: str) -> None:
        try:
            self.ecs.stop_task(cluster=cluster, task=task_arn, reason=reason[:255])
        except ClientError as exc:
            # A task ECS no longer knows (stopped long ago) needs no stop.
            if classify(exc) is ErrorKind.PERMANENT:
                log.info("stop_task ignored", extra={"task_arn": task_arn, "error": error_code(exc)})
                return
            raise RetryLater(f"StopTask: {error_text(exc)}", 5) from exc


@dataclass(frozen=True)
class _Retry:
    """What a retry of one launch needs: the attempt whose lease to release and what the backoff is from."""

    item: TaskItem
    attempt: int
    request: LaunchRequest | None
    receive_count: int


def conflicting_task(exc: BaseException) -> str | None:
    """Return the task ARN of a RunTask ``ConflictException``: the task an earlier call with the token started.

    ECS refuses a clientToken reused with different parameters and names the task it already started for that
    token in ``resourceIds``.
    """
    if not isinstance(exc, ClientError) or error_code(exc) != "ConflictException":
        return None
    resource_ids = exc.response.get("resourceIds") or []
    return str(resource_ids[0]) if resource_ids else None


def _event_detail(item: TaskItem, **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"launch_id": item.launch_id, "attempt": item.attempt, "state": item.state.value}
    if item.key is not None:
        detail.update(item.key.model_dump())
    detail.update({k: v for k, v in extra.items() if v is not None})
    return detail
