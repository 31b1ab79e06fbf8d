"""EcsEventExecutor: Airflow tasks out as launch messages on SQS, their states in from the DynamoDB change feed.

The executor never calls ECS and never writes DynamoDB. Everything it wants done (launch, cancel, adopt) is a
message on the launch queue; everything it learns comes from the task table: one Query per scheduler loop on the
owner's change index when nothing changed, whatever the number of running tasks.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow import __version__ as airflow_version
from airflow.executors.base_executor import BaseExecutor

from ecs_event_executor.airflow_compat import (
    TASK_EVENT_LOGS_HELD,
    check_airflow_version,
    drop_queued,
    executor_conf,
    executor_team,
    hold_task_event_log,
    installed_airflow_version,
    is_task_instance_key,
    launch_id_of_try,
    take_workload,
    token_lifetime_option,
    workload_key,
)
from ecs_event_executor.aws import AwsClients, ClientFactory, connection_client_factory
from ecs_event_executor.change_feed import ChangeFeed
from ecs_event_executor.config import (
    ExecutorSettings,
    ExecutorSettingsError,
    load_settings,
    worker_version_mismatch,
)
from ecs_event_executor.control.aws_errors import ErrorKind, classify, error_text
from ecs_event_executor.control.executor_config import ExecutorConfigError, check_executor_config
from ecs_event_executor.control.health import path_problems
from ecs_event_executor.control.launch_profiles import UnknownQueue, profile_for_queue
from ecs_event_executor.control.messages import (
    AdoptRequest,
    CancelRequest,
    LaunchRequest,
    PingRequest,
    new_launch_id,
)
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.launch_queue import LaunchQueue, OutgoingMessage, ParallelMap, SendResult
from ecs_event_executor.logs import TryLog, failure_tail, read_stream, read_try_log, stream_name, tail_stream

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance

# Outside the supported range the import fails here, with a message naming the range, not later in a scheduler
# loop with an AttributeError.
AIRFLOW_VERSION = check_airflow_version(installed_airflow_version())

# Credential failures back off up to this long between attempts (the scheduler keeps looping meanwhile).
MAX_BACKOFF_SECONDS = 60.0
# The safety-net read of tracked items goes 100 at a time (BatchGetItem's limit), one slice per due loop.
RECONCILE_SLICE = 100
# How often end() polls the change feed while waiting for tasks to finish.
END_POLL_SECONDS = 2.0
# A failed try's info carries its container's last lines: one GetLogEvents each, at most this many per loop, so a
# burst of failures never holds the scheduler loop (the rest carry the control plane's reason only).
TAIL_READS_PER_SYNC = 10
# A pre-assigned external executor id (a UUID) is used as the launch id when it fits the launch-id contract.
_LAUNCH_ID = re.compile(r"^[A-Za-z0-9-]{8,56}$")


class EcsEventExecutorError(RuntimeError):
    """The executor cannot work as configured (start or health check); the message says what to fix."""


@dataclass
class Tracked:
    """A launch this executor is responsible for."""

    key: Any  # TaskInstanceKey or CallbackKey
    launch_id: str
    deadline: datetime | None = None  # after this the launcher will not start it
    running_reported: bool = False
    last_reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What an item means for Airflow: ``running``, ``success`` or ``failed`` (with why), or nothing yet."""

    action: str | None
    info: str | None = None


def outcome_of(item: TaskItem) -> Outcome:
    """Map a task item to what the executor reports for it."""
    if item.state is TaskState.RUNNING:
        return Outcome("running")
    if item.state is TaskState.SUCCEEDED:
        return Outcome("success")
    if item.state is TaskState.FAILED:
        return Outcome("failed", failure_text(item))
    if item.state is TaskState.CANCELLED:
        return Outcome("failed", f"cancelled: {item.reason or 'by the control plane'}")
    if item.state is TaskState.EXPIRED:
        return Outcome("handed_back", item.reason)
    return Outcome(None, item.reason)


def failure_text(item: TaskItem) -> str:
    """Return why a launch failed, in the control plane's words plus the ECS facts it recorded."""
    parts = [item.reason or "the ECS task failed"]
    if item.exit_code is not None:
        parts.append(f"exit code {item.exit_code}")
    if item.stop_code:
        parts.append(f"stop code {item.stop_code}")
    if item.attempt > 1:
        parts.append(f"attempt {item.attempt} of {item.max_attempts}")
    if item.task_arn:
        parts.append(f"ECS task {item.task_arn}")
    return "; ".join(parts)


class EcsEventExecutor(BaseExecutor):
    """Run each Airflow task as an ECS task, through the event-driven control plane.

    Settings: the ``[ecs_event_executor]`` section (see docs/executor.md). ``__init__`` is cheap and makes no AWS
    call: the API server builds executors just to read task logs.
    """

    supports_multi_team: bool = True
    supports_callbacks: bool = True
    # Airflow 3.3+: the scheduler commits a UUID as external_executor_id together with the QUEUED state, and the
    # executor uses it as the launch id, so a scheduler that dies after sending the launch message leaves a task
    # instance the next scheduler adopts by it (no second ECS task). Older versions ignore the flag.
    pre_assigns_external_executor_id: ClassVar[bool] = True

    def __init__(
        self,
        *args: Any,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        parallel_map: ParallelMap | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Airflow 2.11's BaseExecutor has no team_name (no multi-team): None there.
        self.team_name = executor_team(self)
        self._client_factory = client_factory
        self._clock = clock
        self._sleep = sleep
        self._parallel_map = parallel_map  # how the launch queue runs one loop's batches at once (threads)
        self._settings: ExecutorSettings | None = None
        self._clients: AwsClients | None = None
        self._table: TaskTable | None = None
        self._table_generation = -1
        self.owner: str | None = None
        self._feed: ChangeFeed | None = None
        self._tracked: dict[str, Tracked] = {}  # launch id -> what it is
        self._launch_of: dict[Any, str] = {}  # Airflow key -> launch id
        self._outbox: list[OutgoingMessage] = []  # messages SQS has not accepted yet
        self._failures_in_row = 0
        self._next_attempt_at = 0.0
        self._next_reconcile_at = 0.0
        self._reconcile_cursor = 0
        self._tail_reads_left = TAIL_READS_PER_SYNC
        self._held_event_logs: deque[Any] = deque(maxlen=TASK_EVENT_LOGS_HELD)

    # ------------------------------------------------------------------ wiring

    @property
    def settings(self) -> ExecutorSettings:
        if self._settings is None:
            self._settings = load_settings(
                executor_conf(self),
                self.team_name,
                token_lifetime_option=token_lifetime_option(AIRFLOW_VERSION),
            )
        return self._settings

    @property
    def clients(self) -> AwsClients:
        if self._clients is None:
            factory = self._client_factory or connection_client_factory(
                self.settings.conn_id, self.settings.region_name
            )
            self._clients = AwsClients(factory)
        return self._clients

    @property
    def table(self) -> TaskTable:
        """The task table, read-only here; rebuilt with fresh clients after a credential failure."""
        if self._table is None or self._table_generation != self.clients.generation:
            self._table = TaskTable(self.settings.table_name, client=self.clients.client("dynamodb"))
            self._table_generation = self.clients.generation
        return self._table

    @property
    def queue(self) -> LaunchQueue:
        return LaunchQueue(
            self.clients.client("sqs"),
            self.settings.queue_url,
            resend_rounds=self.settings.send_retries,
            parallel_map=self._parallel_map,
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _ensure_owner(self) -> str:
        if self.owner is None:
            self.owner = (
                self.settings.owner or f"{self.team_name or 'default'}:{self.job_id or secrets.token_hex(6)}"
            )
        return self.owner

    def _ensure_feed(self) -> ChangeFeed:
        if self._feed is None:
            overlap_ms = int(self.settings.sync_overlap_seconds * 1000)
            self._feed = ChangeFeed(self._ensure_owner(), start_ms=self._now_ms(), overlap_ms=overlap_ms)
        return self._feed

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Validate the settings, fix this executor's owner and, if configured, check that AWS is reachable."""
        try:
            settings = self.settings
        except ExecutorSettingsError as exc:
            raise EcsEventExecutorError(f"EcsEventExecutor is misconfigured: {exc}") from exc
        owner = self._ensure_owner()
        self._ensure_feed()
        self._next_reconcile_at = self._clock() + settings.reconcile_interval_seconds
        self.log.info(
            "EcsEventExecutor starting: owner %s, queue %s, table %s",
            owner,
            settings.queue_url,
            settings.table_name,
        )
        if mismatch := worker_version_mismatch(settings.worker_airflow_version, airflow_version):
            self.log.warning("EcsEventExecutor: %s", mismatch)
        if settings.check_health_on_startup:
            self.check_health()

    def check_health(self) -> None:
        """Check the whole path: the task table is readable and the launch queue writable with the configured
        identity, the reconciler runs, ECS accepts the launcher's RunTask and ECS events reach the status function
        (the last three from the control plane's heartbeat). Raise naming every broken part."""
        owner = self._ensure_owner()
        problems = []
        try:
            # One Query on the change index proves the table, the index and the read permission.
            next(iter(self.table.changes_since(owner, self._now_ms())), None)
        except Exception as exc:
            problems.append(f"the task table {self.settings.table_name!r} is not readable: {error_text(exc)}")
        result = self.queue.send([PingRequest(owner=owner)])
        if result.unsent:
            problems.append(
                f"the launch queue {self.settings.queue_url!r} is not writable: {result.unsent[0].reason}"
            )
        problems.extend(self._heartbeat_problems())
        if problems:
            raise EcsEventExecutorError(
                "EcsEventExecutor health check failed: "
                + "; ".join(problems)
                + ". The executor cannot run tasks until this is fixed."
            )
        self.log.info("EcsEventExecutor health check succeeded")

    def _heartbeat_problems(self) -> list[str]:
        """Check the control plane's heartbeat: missing is a warning; stale, RunTask refused or events not arriving
        are problems."""
        max_age = self.settings.heartbeat_max_age_seconds
        if not max_age:
            return []
        try:
            heartbeat = self.table.read_heartbeat()
        except Exception as exc:
            return [f"the control plane's heartbeat could not be read: {error_text(exc)}"]
        if heartbeat is None:
            # A stack deployed minutes ago may not have run its reconciler yet.
            self.log.warning("EcsEventExecutor: no control-plane heartbeat yet; is the reconciler deployed?")
            return []
        # The launcher's and the status function's notes on the path to ECS and back (control/health.py).
        problems = path_problems(heartbeat, self._now_ms())
        if "heartbeat_at" not in heartbeat:
            self.log.warning(
                "EcsEventExecutor: the reconciler has not written its heartbeat yet; is it deployed?"
            )
            return problems
        age = (self._now_ms() - int(heartbeat["heartbeat_at"])) / 1000
        if age > max_age:
            problems.append(
                f"the control plane's heartbeat is {age:.0f} s old (limit {max_age:.0f} s): the reconciler is not "
                "running, so lost ECS events would not be recovered"
            )
        return problems

    # -------------------------------------------------------------- queueing

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        """Turn workloads into launch messages and send them (10 per SQS call); never raises.

        A workload that cannot be turned into a launch is failed with the reason, never left behind unreported.
        """
        messages: list[OutgoingMessage] = []
        for workload in workload_items:
            try:
                request = self._launch_request(workload)
            except Exception as exc:
                self._refuse_workload(workload, exc)
                continue
            if request is not None:
                messages.append(request)
        if messages:
            self._send(messages)

    def _process_tasks(self, task_tuples: Sequence[Any]) -> None:
        """Airflow 2.11: send the scheduler's ``(key, command, queue, executor_config)`` tuples as launches."""
        self._process_workloads(task_tuples)

    def execute_async(
        self, key: Any, command: Sequence[str], queue: str | None = None, executor_config: Any = None
    ) -> None:
        """Airflow 2.11: send one task's ``airflow tasks run`` command as a launch; never raises."""
        self._process_workloads([(key, list(command), queue, executor_config)])

    def _refuse_workload(self, workload: Any, exc: Exception) -> None:
        """Fail a workload the executor cannot run, saying why (the scheduler sees the failure, not silence)."""
        reason = f"EcsEventExecutor cannot run this workload: {type(exc).__name__}: {exc}"
        try:
            key = workload_key(workload)
        except Exception:
            key = None
        self.log.error("%s (workload %s)", reason, key if key is not None else type(workload).__name__)
        if key is None:
            return
        try:
            drop_queued(self, key)
            self._task_event(key, "ecs task refused", reason)
            self.fail(key, info=reason)
        except Exception:
            self.log.exception("EcsEventExecutor could not report the refused workload %s", key)

    def _launch_request(self, workload: Any) -> LaunchRequest | None:
        work = take_workload(self, workload)
        settings = self.settings
        if settings.launch_profiles is not None:
            try:
                profile_for_queue(
                    work.queue,
                    settings.launch_profiles,
                    unknown=settings.unknown_queue,
                    setting="[ecs_event_executor] unknown_queue",
                )
            except UnknownQueue as exc:
                message = f"EcsEventExecutor refused the task: {exc}"
                self.log.error("%s (task %s)", message, work.key)
                self._task_event(work.key, "ecs task unknown queue", message)
                self.fail(work.key, info=message)
                return None
        try:
            # The launcher's own rules and size budget, applied now: a bad config fails the task at once.
            executor_config = check_executor_config(
                work.executor_config,
                container_name=settings.container_name,
                command=work.command,
                max_attempts=settings.max_run_task_attempts,
                key=work.task_key,
                team=self.team_name,
                allowed_images=settings.image_patterns,
                images_setting="[ecs_event_executor] allowed_images",
            )
        except (ExecutorConfigError, TypeError, ValueError) as exc:
            message = f"EcsEventExecutor refused the task's executor_config: {exc}"
            self.log.error("%s (task %s)", message, work.key)
            self._task_event(work.key, "ecs task invalid executor_config", message)
            self.fail(work.key, info=message)
            return None
        queued_at = datetime.fromtimestamp(self._clock(), UTC)
        pre_assigned = work.external_executor_id
        launch_id = (
            pre_assigned if pre_assigned and _LAUNCH_ID.match(pre_assigned) else new_launch_id(work.task_key)
        )
        request = LaunchRequest(
            launch_id=launch_id,
            owner=self._ensure_owner(),
            team=self.team_name,
            key=work.task_key,
            command=work.command,
            executor_config=executor_config,
            queued_at=queued_at,
            launch_deadline=self._launch_deadline(queued_at, work.token_expires_at),
            max_attempts=settings.max_run_task_attempts,
            queue=work.queue,
        )
        self._track(Tracked(key=work.key, launch_id=request.launch_id, deadline=request.launch_deadline))
        self.running.add(work.key)
        # The launch id becomes the task instance's external_executor_id: what another scheduler adopts by.
        self.running_state(work.key, request.launch_id)
        return request

    def _launch_deadline(self, queued_at: datetime, token_expires_at: datetime | None) -> datetime:
        """Return the last instant the launcher may start the task: the workload token's expiry (or, without an
        ``exp`` claim, the Airflow version's token lifetime after queueing) less the start-up margin (at most half
        the time left)."""
        settings = self.settings
        expires = token_expires_at or queued_at + timedelta(seconds=settings.token_lifetime_seconds)
        # A margin longer than the token's remaining life would refuse every launch (a short task_queued_timeout):
        # it never takes more than half of what is left.
        margin = min(timedelta(seconds=settings.launch_start_margin_seconds), (expires - queued_at) / 2)
        return expires - max(margin, timedelta(0))

    def _track(self, tracked: Tracked) -> None:
        previous = self._launch_of.get(tracked.key)
        if previous is not None and previous != tracked.launch_id:
            self._tracked.pop(previous, None)
        self._tracked[tracked.launch_id] = tracked
        self._launch_of[tracked.key] = tracked.launch_id

    def _untrack(self, launch_id: str) -> Tracked | None:
        tracked = self._tracked.pop(launch_id, None)
        if tracked is not None and self._launch_of.get(tracked.key) == launch_id:
            del self._launch_of[tracked.key]
        return tracked

    def _send(self, messages: Sequence[OutgoingMessage]) -> SendResult:
        """Send messages; keep what SQS did not take in the outbox for the next loop (or fail it if hopeless)."""
        result = self.queue.send(messages)
        for unsent in result.unsent:
            if unsent.kind is ErrorKind.PERMANENT and isinstance(unsent.message, LaunchRequest):
                self._fail_launch(
                    unsent.message.launch_id, f"the launch queue refused the launch message: {unsent.reason}"
                )
            else:
                self._outbox.append(unsent.message)
        if result.unsent:
            self.log.warning(
                "EcsEventExecutor: %d of %d messages not sent yet (%s); retrying next loop",
                len(result.unsent),
                len(messages),
                result.unsent[0].reason,
            )
        if result.credentials_failed:
            self._credentials_failed(result.unsent[0].reason)
        return result

    def _flush_outbox(self) -> None:
        if not self._outbox:
            return
        now = datetime.fromtimestamp(self._clock(), UTC)
        pending, self._outbox = self._outbox, []
        keep: list[OutgoingMessage] = []
        for message in pending:
            if isinstance(message, LaunchRequest):
                if message.launch_id not in self._tracked:
                    continue  # revoked meanwhile: never sent, nothing to cancel
                if message.launch_deadline is not None and message.launch_deadline < now:
                    self._hand_back(
                        message.launch_id,
                        "the launch message could not be sent to the launch queue before the launch deadline",
                    )
                    continue
            keep.append(message)
        if keep:
            self._send(keep)

    def _fail_launch(self, launch_id: str, reason: str) -> None:
        tracked = self._untrack(launch_id)
        if tracked is None:
            return
        self.log.error("EcsEventExecutor: task %s failed: %s", tracked.key, reason)
        self._task_event(tracked.key, "ecs task launch failure", reason)
        self.fail(tracked.key, info=reason)

    def _hand_back(self, launch_id: str, reason: str) -> None:
        """Stop following a launch that was not started in time, without failing the try.

        The task instance stays queued in Airflow; the scheduler's stuck-in-queued check revokes and requeues it
        (up to ``[scheduler] num_stuck_in_queued_retries`` times) with a fresh workload token. The key stays in
        ``running`` until that revoke, so the slot is not handed out twice.
        """
        tracked = self._untrack(launch_id)
        if tracked is None:
            return
        message = f"not started in time, handed back to Airflow's requeue: {reason}"
        self.log.warning("EcsEventExecutor: task %s %s", tracked.key, message)
        self._task_event(tracked.key, "ecs task not started in time", message)

    def _task_event(self, key: Any, event: str, extra: str) -> None:
        if is_task_instance_key(key):
            self.log_task_event(event=event, extra=extra, ti_key=key)
            # Without a strong reference Airflow 3.3.2 writes the row empty and loses it (airflow_compat).
            hold_task_event_log(self, self._held_event_logs)

    # ------------------------------------------------------------------- sync

    def sync(self) -> None:
        """Send what is waiting, read what changed for this executor and report it; never raises."""
        if self._clock() < self._next_attempt_at:
            return
        self._tail_reads_left = TAIL_READS_PER_SYNC
        try:
            self._flush_outbox()
            feed = self._ensure_feed()
            read = feed.read(self.table, now_ms=self._now_ms())
            for item in read.items:
                self._apply(item)
            if self._clock() >= self._next_reconcile_at:
                self._reconcile()
            self._failures_in_row = 0
        except Exception as exc:
            kind = classify(exc)
            if kind is ErrorKind.CREDENTIALS:
                self._credentials_failed(error_text(exc))
            else:
                self.log.warning(
                    "EcsEventExecutor sync failed (%s, retrying next loop): %s", kind.value, error_text(exc)
                )

    def _credentials_failed(self, reason: str) -> None:
        self._failures_in_row += 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (self._failures_in_row - 1))
        self._next_attempt_at = self._clock() + delay
        if self._clients is not None:
            self._clients.reset()
        self.log.warning(
            "EcsEventExecutor: AWS credentials failed (%s); rebuilding clients, next try in %.0fs",
            reason,
            delay,
        )

    def _apply(self, item: TaskItem) -> None:
        """Report one changed item to Airflow, if it is one of ours."""
        tracked = self._tracked.get(item.launch_id)
        if tracked is None:
            return
        if item.owner and self.owner and item.owner != self.owner and not item.state.terminal:
            # Adopted before its launch message was applied: the item was created under the old owner, so this
            # executor's change feed would not show it. Move it (once per sighting; the reconcile read found it).
            self._send([AdoptRequest(launch_id=item.launch_id, owner=self.owner)])
        outcome = outcome_of(item)
        if outcome.action == "running":
            if not tracked.running_reported:
                tracked.running_reported = True
                self.running_state(tracked.key, item.launch_id)
        elif outcome.action == "success":
            self._untrack(item.launch_id)
            self.success(tracked.key)
        elif outcome.action == "handed_back":
            self._hand_back(item.launch_id, outcome.info or "the launch deadline passed")
        elif outcome.action == "failed":
            self._untrack(item.launch_id)
            info = self._failure_info(item) if item.state is TaskState.FAILED else outcome.info
            self.log.warning("EcsEventExecutor: task %s failed: %s", tracked.key, info)
            self._task_event(tracked.key, "ecs task failed", info or "")
            self.fail(tracked.key, info=info)
        elif outcome.info and outcome.info != tracked.last_reason:
            # Launching again or waiting for capacity: worth a line, once per new reason.
            tracked.last_reason = outcome.info
            self.log.info("EcsEventExecutor: task %s is %s: %s", tracked.key, item.state.value, outcome.info)

    def _reconcile(self) -> None:
        """Read a slice of the tracked items directly: a safety net for a change the feed could have missed.

        One BatchGetItem (100 items) per due loop, spread so a full pass over every tracked item takes one
        ``reconcile_interval_seconds``: a loop never makes more than one extra request, whatever runs.
        """
        interval = self.settings.reconcile_interval_seconds
        launch_ids = list(self._tracked)
        if not launch_ids:
            self._next_reconcile_at = self._clock() + interval
            return
        slices = -(-len(launch_ids) // RECONCILE_SLICE)
        start = self._reconcile_cursor % len(launch_ids)
        chunk = launch_ids[start : start + RECONCILE_SLICE]
        self._reconcile_cursor = start + len(chunk)
        self._next_reconcile_at = self._clock() + interval / slices
        for item in self.table.get_many(chunk).values():
            self._apply(item)

    # --------------------------------------------------------------- adoption

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Adopt task instances whose launch id (external_executor_id) is in the task table; no ECS call."""
        candidates = {ti.external_executor_id: ti for ti in tis if ti.external_executor_id}
        if not candidates:
            return list(tis)
        owner = self._ensure_owner()
        try:
            items = self.table.get_many(list(candidates))
        except Exception as exc:
            self.log.warning(
                "EcsEventExecutor could not read the task table to adopt tasks: %s", error_text(exc)
            )
            if classify(exc) is ErrorKind.CREDENTIALS:
                self._credentials_failed(error_text(exc))
            return list(tis)
        adopted: set[str] = set()
        adopt_messages: list[OutgoingMessage] = []
        for launch_id, item in items.items():
            ti = candidates[launch_id]
            if item.key is not None and (
                item.key.dag_id,
                item.key.task_id,
                item.key.run_id,
                item.key.map_index,
            ) != (
                ti.dag_id,
                ti.task_id,
                ti.run_id,
                ti.map_index,
            ):
                continue
            key = ti.key
            self._track(
                Tracked(key=key, launch_id=launch_id, running_reported=item.state is TaskState.RUNNING)
            )
            adopted.add(launch_id)
            if item.state.terminal:
                # It finished while nobody watched: report it now, nothing to move.
                self.running.add(key)
                self._apply(item)
                continue
            self.running.add(key)
            adopt_messages.append(AdoptRequest(launch_id=launch_id, owner=owner, team=self.team_name))
        for launch_id in candidates.keys() - items.keys():
            ti = candidates[launch_id]
            if ti.state != "queued" or not _LAUNCH_ID.match(launch_id):
                continue
            # A pre-assigned launch id with no item yet: the dead scheduler may have sent the launch message and
            # the launcher not applied it yet. Follow it rather than let Airflow queue a second launch; if the
            # message was never sent, the stuck-in-queued check revokes and requeues the try.
            self._track(Tracked(key=ti.key, launch_id=launch_id))
            self.running.add(ti.key)
            adopted.add(launch_id)
        if adopt_messages:
            self._send(adopt_messages)
        if adopted:
            self.log.info("EcsEventExecutor adopted %d task instances: %s", len(adopted), sorted(adopted))
        return [ti for ti in tis if ti.external_executor_id not in adopted]

    # ----------------------------------------------------------- revoke, end

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Cancel a task (not launched: never launched; launched: stopped); Airflow requeues it. Never raises."""
        try:
            key = ti.key
            launch_id = self._launch_of.get(key) or getattr(ti, "external_executor_id", None)
            self.queued_tasks.pop(key, None)
            self.running.discard(key)
            if not launch_id:
                return
            self._untrack(launch_id)
            unsent = [m for m in self._outbox if isinstance(m, LaunchRequest) and m.launch_id == launch_id]
            if unsent:
                # SQS never took the launch: dropping it is the whole cancellation.
                self._outbox = [m for m in self._outbox if m not in unsent]
                return
            reason = "revoked by the Airflow scheduler (task stuck in queued)"
            self._send(
                [
                    CancelRequest(
                        launch_id=launch_id, owner=self._ensure_owner(), team=self.team_name, reason=reason
                    )
                ]
            )
            self.log.info("EcsEventExecutor revoked task %s (launch %s)", key, launch_id)
        except Exception:
            self.log.exception("EcsEventExecutor could not revoke %s", getattr(ti, "key", ti))

    def end(self) -> None:
        """Wait, at most ``end_wait_timeout_seconds``, for this executor's tasks to finish."""
        try:
            deadline = self._clock() + self.settings.end_wait_timeout_seconds
            while True:
                self.sync()
                if not self._tracked and not self._outbox:
                    return
                if self._clock() >= deadline:
                    self.log.warning(
                        "EcsEventExecutor: stopped waiting for %d tasks after %.0fs; they keep running on ECS "
                        "and another scheduler can adopt them",
                        len(self._tracked),
                        self.settings.end_wait_timeout_seconds,
                    )
                    return
                self._sleep(min(END_POLL_SECONDS, max(0.0, deadline - self._clock())))
        except Exception:
            self.log.exception("EcsEventExecutor failed while ending")

    def terminate(self) -> None:
        """Stop every task of this executor through the control plane, then wait (bounded) for them to end."""
        try:
            owner = self._ensure_owner()
            reason = "terminated: the Airflow executor was asked to stop all its tasks"
            messages: list[OutgoingMessage] = [
                CancelRequest(launch_id=launch_id, owner=owner, team=self.team_name, reason=reason)
                for launch_id in self._tracked
            ]
            if messages:
                self._send(messages)
            self.end()
        except Exception:
            self.log.exception("EcsEventExecutor failed while terminating")

    # ------------------------------------------------------------------- logs

    def get_task_log(self, ti: TaskInstance, try_number: int) -> tuple[list[str], list[str]]:
        """Return (sources, log lines) of any try: its containers' awslogs, then the control plane's record."""
        log = self.try_log(ti, try_number)
        return log.sources, log.lines

    def try_log(self, ti: Any, try_number: int) -> TryLog:
        """Return one try's log; never raises. The try's launch is its ``external_executor_id`` (an earlier
        try's is in Airflow's task instance history), so every try is served, not only the newest launch."""
        try:
            launch_id = self._launch_of.get(_key_for_try(ti, try_number)) or launch_id_of_try(ti, try_number)
            if not launch_id:
                return TryLog(
                    sources=[f"ECS event executor: try {try_number} was not launched by this executor"]
                )
            item = self.table.get(launch_id, consistent=False)
            if item is not None and item.key is not None and item.key.try_number != try_number:
                return TryLog(sources=[f"ECS event executor: launch {launch_id} ran another try"])
            settings = self.settings
            log_group = settings.log_group
            return read_try_log(
                item,
                launch_id,
                read_stream_of=(
                    (lambda stream: read_stream(self.clients.client("logs"), log_group, stream))
                    if log_group
                    else None
                ),
                stream_of=self._stream_of,
                where=log_group or "",
            )
        except Exception as exc:
            return TryLog(sources=[f"ECS event executor could not read the task's log: {error_text(exc)}"])

    def _stream_of(self, task_id: str) -> str:
        return stream_name(self.settings.log_stream_prefix, self.settings.container_name, task_id)

    def _failure_info(self, item: TaskItem) -> str:
        """Return a failed try's info: the control plane's reason and the last lines of its container's log."""
        info = failure_text(item)
        log_group = self.settings.log_group
        if not log_group or self._tail_reads_left <= 0:
            return info
        self._tail_reads_left -= 1
        return info + failure_tail(
            item,
            lambda stream: tail_stream(self.clients.client("logs"), log_group, stream),
            stream_of=self._stream_of,
        )

    # --------------------------------------------------------------- helpers

    @property
    def tracked_launches(self) -> dict[str, Any]:
        """Launch id -> Airflow key of every launch this executor watches (for operators and tests)."""
        return {launch_id: t.key for launch_id, t in self._tracked.items()}


def _key_for_try(ti: Any, try_number: int) -> Any:
    """Return the Airflow key of ``ti``'s try ``try_number`` (what ``_launch_of`` is keyed by), if it has one."""
    key: Any = getattr(ti, "key", None)
    return key.with_try_number(try_number) if hasattr(key, "with_try_number") else key
