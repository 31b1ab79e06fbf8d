"""Find what events missed: lost final events from ECS's own list of stopped tasks, lost launches from the index.

EventBridge can drop an event after its retries and a Lambda can crash mid-write; ECS forgets a stopped task
about an hour after it stops. The reconciler runs on a schedule well inside that hour. Each pass:

- lists the tasks this control plane started that ECS shows as stopped (ListTasks per cluster, ``startedBy``,
  ``desiredStatus`` STOPPED; the default cluster and every launch profile's), describes them (DescribeTasks, 100 a
  call; ECS's API calls cost nothing), keeps those that stopped since the last completed pass began (less
  STOPPED_OVERLAP_SECONDS), reads their items (BatchGetItem, eventually consistent, four attributes) and applies
  each task whose item is behind (same attempt, not terminal) through the status handler's own conditional
  writes. A running task costs nothing: no write, no read, until it stops.
- reads the sparse stale index, which holds only launches waiting without an ECS task (backing off, or a relaunch
  whose message could be lost; ``tasks.schema``): a launch whose queue message was lost is launched again (same
  attempt, same client token, so a task that did start is found, not duplicated), but not one that is only
  backing off: the launcher records when its retry is due. Items the previous version put in the index with a
  task are checked as it did (DescribeTasks; declared lost only after ECS answered ``MISSING`` on two passes at
  least ``missing_confirm_seconds`` apart) until they finish.

A pass is bounded by time, not by a count; ``out_of_time`` says it stopped early, and the next pass starts its
stopped-task window where the last completed one did.

Each pass first replays the status function's failed events (``failed_events``: ECS events whose invocation
failed after Lambda's retries), when ``FAILED_EVENTS_QUEUE_URL`` is set.

With ``DERIVED_TASK_DEFINITION_UNUSED_DAYS`` set, a pass also deregisters the task definitions the launcher derived
for per-task images that no launch used for that many days (``task_definitions.collect_unused``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ecs_event_executor.control import bus as bus_events
from ecs_event_executor.control.aws_clients import lambda_client
from ecs_event_executor.control.bus import ControlPlaneBus
from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY, airflow_environment
from ecs_event_executor.control.environment import LambdaEnvironment
from ecs_event_executor.control.failed_events import FailedEvents
from ecs_event_executor.control.health import HealthNotes
from ecs_event_executor.control.messages import RelaunchRequest
from ecs_event_executor.control.status_tracking import StatusResult, StatusSettings, StatusTracker
from ecs_event_executor.control.task_definitions import collect_unused, family_of
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.registrations import Registrations
from ecs_event_executor.control.tasks.schema import Attr
from ecs_event_executor.control.tasks.table import TaskTable

log = logging.getLogger(__name__)

# AWS limits DescribeTasks to 100 task ARNs per call.
DESCRIBE_BATCH = 100
# DescribeTasks' ``failures[].reason`` for a task ECS does not know (never started, or forgotten).
MISSING = "MISSING"
# The per-item writes of one DescribeTasks batch run on this many threads: a pass over tens of thousands of
# items is bounded by request latency, not by the Lambda's CPU.
WRITE_THREADS = 8
# How far before the last completed pass's start the stopped-task window opens. ListTasks and DescribeTasks are
# eventually consistent (a task that stopped just before a pass may not be listed yet) and ``stoppedAt`` is ECS's
# clock, not ours: two minutes covers both many times over, and costs a second eventually consistent read (half a
# read unit) for the tasks that stopped in it.
STOPPED_OVERLAP_SECONDS = 120
# ECS shows a stopped task for about an hour: after a longer gap (or on a first pass) every listed task is read.
ECS_MEMORY_SECONDS = 3600
# The heartbeat fact that holds when the last pass that read every stopped task began (epoch ms).
STOPPED_SCAN_FACT = "stopped_scan_started_at"
# What the comparison with a stopped task needs of its item.
_PROGRESS_ATTRIBUTES = (Attr.ATTEMPT, Attr.ECS_VERSION, Attr.TASK_ARN)
# Used when the environment does not set STALE_AFTER_SECONDS or RECONCILE_PAGE_SIZE.
DEFAULT_STALE_AFTER_SECONDS = 600
DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ReconcilerSettings:
    status: StatusSettings
    # An active item unchanged for this long is checked. ECS keeps stopped tasks for about an hour, so this plus
    # the schedule's period must stay well below that.
    stale_after_seconds: int = DEFAULT_STALE_AFTER_SECONDS
    # Stale keys read per page (spread over the index's shards); a pass reads pages until none is left or its
    # time is up.
    page_size: int = DEFAULT_PAGE_SIZE
    # A task is lost only if DescribeTasks still answers MISSING this long after it first did (the next pass).
    missing_confirm_seconds: int = 180
    # The families task definitions are derived from (the default and the profiles' task definitions), and how
    # many days a derived one may go unused before it is deregistered (None: never).
    base_families: tuple[str, ...] = ()
    derived_unused_days: int | None = None
    # The status function's on-failure destination, replayed on each pass (None: nothing to replay).
    failed_events_queue_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcilerSettings:
        """Read the reconciler's environment; a missing or bad variable raises naming it."""
        read = LambdaEnvironment.read(env)
        definitions = [read.task_definition] + [p.task_definition for p in read.launch_profiles.values()]
        return cls(
            status=StatusSettings.from_environment(read),
            stale_after_seconds=read.stale_after_seconds or DEFAULT_STALE_AFTER_SECONDS,
            page_size=read.reconcile_page_size or DEFAULT_PAGE_SIZE,
            base_families=tuple(dict.fromkeys(family_of(d) for d in definitions if d)),
            derived_unused_days=read.derived_task_definition_unused_days,
            failed_events_queue_url=read.failed_events_queue_url,
        )


@dataclass
class ReconcileReport:
    checked: int = 0
    updated: int = 0
    lost: int = 0
    missing: int = 0  # MISSING for the first time (or not long enough): asked again next pass
    relaunched: int = 0
    backing_off: int = 0  # launches waiting for their retry (or a live lease): left alone
    unchanged: int = 0
    describe_calls: int = 0
    pages: int = 0
    stopped_listed: int = 0  # stopped tasks of this control plane ECS listed
    stopped_read: int = 0  # of them, stopped inside the window: their items were read
    list_calls: int = 0
    out_of_time: int = 0  # 1 if the pass stopped before reading every stopped task and stale item
    deregistered: int = 0  # revisions of derived task definitions no launch used for the configured days
    replayed: int = 0  # failed ECS events applied from the failed-events queue (and deleted)
    replay_kept: int = 0  # failed ECS events left there: their replay failed, or they hold no event

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Reconciler:
    """One reconciliation pass; clients are injectable."""

    def __init__(
        self,
        settings: ReconcilerSettings,
        *,
        ecs: Any | None = None,
        sqs: Any | None = None,
        table: TaskTable | None = None,
        bus: ControlPlaneBus | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._ecs = ecs
        self.table = table or TaskTable(settings.status.table_name, clock=clock)
        self.bus = bus or ControlPlaneBus(settings.status.event_bus_name)
        self.tracker = StatusTracker(
            settings.status, table=self.table, bus=self.bus, health=HealthNotes(clock, reconciler=True)
        )
        self._clock = clock
        self._timer = timer
        self._sqs = sqs

    @property
    def ecs(self) -> Any:
        if self._ecs is None:
            self._ecs = lambda_client("ecs")
        return self._ecs

    def run(self, *, time_budget_seconds: float | None = None) -> ReconcileReport:
        """Apply the stopped tasks whose final events were lost, then check the stale index's items, until done or
        ``time_budget_seconds`` is spent; then write the control-plane heartbeat."""
        report = ReconcileReport()
        deadline = None if time_budget_seconds is None else self._timer() + time_budget_seconds

        def out_of_time() -> bool:
            if deadline is None or self._timer() < deadline:
                return False
            report.out_of_time = 1
            log.warning("reconciler pass out of time; the next pass goes on", extra=report.as_dict())
            return True

        now_ms = int(self._clock() * 1000)
        cutoff = now_ms - self.settings.stale_after_seconds * 1000
        self._replay_failed_events(deadline, report)
        facts: dict[str, int | str] = {}
        with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="reconcile") as pool:
            if self._apply_stopped_tasks(self._stopped_since(now_ms), report, pool, out_of_time):
                facts[STOPPED_SCAN_FACT] = now_ms
            if not report.out_of_time:
                for page in self.table.stale_pages(cutoff, page_size=self.settings.page_size):
                    report.pages += 1
                    self._check_page(page, now_ms, report, pool)
                    if out_of_time():
                        break
        if self.settings.derived_unused_days and self.settings.base_families and not report.out_of_time:
            self._collect_task_definitions(now_ms, report)
        facts.update({f"last_{k}": v for k, v in report.as_dict().items()})
        self.table.write_heartbeat(**facts)
        log.info("reconciled", extra=report.as_dict())
        return report

    def _replay_failed_events(self, deadline: float | None, report: ReconcileReport) -> None:
        """Apply the status function's failed events (``failed_events``); a failure waits for the next pass."""
        if not self.settings.failed_events_queue_url:
            return
        if self._sqs is None:
            self._sqs = lambda_client("sqs")
        # Its own tracker: these are events that reached the status function (no reconciler's health note).
        tracker = StatusTracker(self.settings.status, table=self.table, bus=self.bus)
        queue = FailedEvents(self.settings.failed_events_queue_url, tracker, self._sqs)
        try:
            replay = queue.replay(lambda: deadline is not None and self._timer() >= deadline)
        except Exception:
            log.exception(
                "failed events not replayed (the queue could not be read); the next pass tries again"
            )
            return
        report.replayed = replay.replayed
        report.replay_kept = replay.kept + replay.malformed

    # ------------------------------------------------------ stopped tasks

    def _clusters(self) -> list[str]:
        status = self.settings.status
        return list(dict.fromkeys([status.cluster or "default", *status.profile_clusters]))

    def _stopped_since(self, now_ms: int) -> int:
        """Return the epoch ms from which stopped tasks are read: the last completed pass's start less the overlap,
        or 0 (all ECS still shows) on a first pass or after a gap longer than ECS keeps stopped tasks."""
        heartbeat = self.table.read_heartbeat() or {}
        last = int(heartbeat.get(STOPPED_SCAN_FACT, 0))
        if not last or now_ms - last > (ECS_MEMORY_SECONDS - STOPPED_OVERLAP_SECONDS) * 1000:
            return 0
        return last - STOPPED_OVERLAP_SECONDS * 1000

    def _apply_stopped_tasks(
        self,
        since_ms: int,
        report: ReconcileReport,
        pool: ThreadPoolExecutor,
        out_of_time: Callable[[], bool],
    ) -> bool:
        """Apply every stopped task (stopped at or after ``since_ms``) whose item is behind; return whether every
        cluster was read to the end."""
        for cluster in self._clusters():
            paginator = self.ecs.get_paginator("list_tasks")
            pages = paginator.paginate(cluster=cluster, startedBy=STARTED_BY, desiredStatus="STOPPED")
            for page in pages:
                report.list_calls += 1
                arns = page.get("taskArns") or []
                report.stopped_listed += len(arns)
                for start in range(0, len(arns), DESCRIBE_BATCH):
                    described = self.ecs.describe_tasks(
                        cluster=cluster, tasks=arns[start : start + DESCRIBE_BATCH]
                    )
                    report.describe_calls += 1
                    stopped = [t for t in described.get("tasks") or [] if _stopped_at_ms(t) >= since_ms]
                    self._apply_behind(stopped, report, pool)
                if out_of_time():
                    return False
        return True

    def _apply_behind(
        self, tasks: list[Mapping[str, Any]], report: ReconcileReport, pool: ThreadPoolExecutor
    ) -> None:
        """Read the items of stopped tasks and apply the tasks whose item has not recorded their end."""
        marked = [(task, marks) for task in tasks if (marks := self._marks(task)) is not None]
        if not marked:
            return
        report.stopped_read += len(marked)
        report.checked += len(marked)
        items = self.table.get_many(
            [launch_id for _, (launch_id, _) in marked], consistent=False, attributes=_PROGRESS_ATTRIBUTES
        )
        behind = [
            task
            for task, (launch_id, attempt) in marked
            if (item := items.get(launch_id)) is not None
            and item.attempt == attempt
            and not item.state.terminal
        ]
        report.unchanged += len(marked) - len(behind)
        results = pool.map(lambda task: self.tracker.handle(_as_event(task)), behind)
        for result in results:
            if result in (StatusResult.APPLIED, StatusResult.FINISHED, StatusResult.RELAUNCHED):
                report.updated += 1
            else:
                report.unchanged += 1

    def _marks(self, task: Mapping[str, Any]) -> tuple[str, int] | None:
        """Return the launch id and attempt the launcher set on a task's Airflow container, or None."""
        # The status path's own reading: the Airflow container's override environment only (not a sidecar's).
        env = airflow_environment(task, self.settings.status.container_name)
        launch_id, attempt = env.get(LAUNCH_ID_ENV), env.get(ATTEMPT_ENV, "1")
        if launch_id and attempt.isdigit():
            return launch_id, int(attempt)
        return None

    # ---------------------------------------------------------- the stale index

    def _collect_task_definitions(self, now_ms: int, report: ReconcileReport) -> None:
        """Deregister derived task definitions unused for the configured days; a failure waits for the next pass."""
        assert self.settings.derived_unused_days is not None
        try:
            cleanup = collect_unused(
                self.ecs,
                Registrations(self.table.table_name, client=self.table.client, clock=self._clock),
                self.settings.base_families,
                unused_days=self.settings.derived_unused_days,
                now_ms=now_ms,
            )
        except Exception:
            log.exception("derived task definition cleanup failed; the next pass tries again")
            return
        report.deregistered = cleanup.deregistered

    def _check_page(
        self, page: list[TaskItem], now_ms: int, report: ReconcileReport, pool: ThreadPoolExecutor
    ) -> None:
        report.checked += len(page)
        by_cluster: dict[str, list[TaskItem]] = defaultdict(list)
        for item in page:
            if item.task_arn:
                by_cluster[item.cluster_arn or self.settings.status.cluster or "default"].append(item)
            elif item.state is TaskState.LAUNCHING and self._launch_overdue(item, now_ms):
                self._relaunch_lost_message(item, report)
            elif item.state is TaskState.LAUNCHING:
                report.backing_off += 1
            else:
                report.unchanged += 1
        for cluster, items in by_cluster.items():
            for start in range(0, len(items), DESCRIBE_BATCH):
                self._check_tasks(cluster, items[start : start + DESCRIBE_BATCH], now_ms, report, pool)

    def _launch_overdue(self, item: TaskItem, now_ms: int) -> bool:
        """Return whether a launch without a task has been left by every launcher: its lease and its retry (the
        queue's visibility timeout) are both more than ``stale_after_seconds`` past."""
        due = max(item.lease_until or 0, item.retry_at or 0)
        return now_ms - due > self.settings.stale_after_seconds * 1000

    def _relaunch_lost_message(self, item: TaskItem, report: ReconcileReport) -> None:
        # Its queue message is gone (dead-lettered, or a relaunch publish was lost): launch the same attempt again.
        message = RelaunchRequest(launch_id=item.launch_id, attempt=item.attempt)
        self.bus.publish(
            bus_events.RELAUNCH_REQUESTED, message.model_dump(by_alias=True, mode="json"), required=True
        )
        self.table.touch(item.launch_id, item.attempt)
        report.relaunched += 1

    def _check_tasks(
        self,
        cluster: str,
        items: list[TaskItem],
        now_ms: int,
        report: ReconcileReport,
        pool: ThreadPoolExecutor,
    ) -> None:
        arns = [item.task_arn for item in items if item.task_arn]
        response = self.ecs.describe_tasks(cluster=cluster, tasks=arns)
        report.describe_calls += 1
        known = {task["taskArn"]: task for task in response.get("tasks", [])}
        failures = {f.get("arn"): f.get("reason") for f in response.get("failures", [])}
        verdicts = pool.map(lambda item: self._verdict(item, known, failures, now_ms), items)
        for verdict in verdicts:
            setattr(report, verdict, getattr(report, verdict) + 1)

    def _verdict(
        self, item: TaskItem, known: Mapping[str, Any], failures: Mapping[str | None, str | None], now_ms: int
    ) -> str:
        """Apply what ECS said about one item's task; return the report counter it adds to."""
        arn = item.task_arn or ""
        task = known.get(arn)
        if task is None:
            reason = failures.get(arn)
            if reason != MISSING:
                # Not an answer about the task (or none at all): ask again next pass.
                log.warning("DescribeTasks failure", extra={"launch_id": item.launch_id, "reason": reason})
                return "unchanged"
            return self._missing(item, now_ms)
        if item.ecs_version is not None and task.get("version") == item.ecs_version:
            # ECS is where the last applied event left it: nothing to write but the check.
            self.table.touch(item.launch_id, item.attempt)
            return "unchanged"
        result = self.tracker.handle(_as_event(task))
        if result in (StatusResult.APPLIED, StatusResult.FINISHED, StatusResult.RELAUNCHED):
            if item.missing_since is not None and result is StatusResult.APPLIED:
                self.table.touch(item.launch_id, item.attempt)
            return "updated"
        # Nothing new: re-stamp it so the next run does not check it again straight away.
        self.table.touch(item.launch_id, item.attempt)
        return "unchanged"

    def _missing(self, item: TaskItem, now_ms: int) -> str:
        """ECS answered MISSING: note it the first time; fail the task only if it still does a while later."""
        arn = item.task_arn or ""
        if item.missing_since is None:
            self.table.mark_missing(item.launch_id, item.attempt, task_arn=arn)
            return "missing"
        if now_ms - item.missing_since < self.settings.missing_confirm_seconds * 1000:
            return "missing"
        written, _ = self.table.fail_lost(
            item.launch_id,
            item.attempt,
            task_arn=arn,
            reason="ECS no longer knows the task (its state-change events were lost and it aged out of "
            "DescribeTasks); its outcome is unknown",
        )
        return "lost" if written else "unchanged"


def _stopped_at_ms(task: Mapping[str, Any]) -> int:
    """Return when ECS says a task stopped (epoch ms); -1 while it has not (it is read once it has)."""
    stopped_at = task.get("stoppedAt")
    if task.get("lastStatus") != "STOPPED" or stopped_at is None:
        return -1
    if isinstance(stopped_at, datetime):
        return int(stopped_at.timestamp() * 1000)
    return int(float(stopped_at) * 1000)


def _as_event(task: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap a DescribeTasks task as the "ECS Task State Change" event it corresponds to."""
    detail = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in task.items()}
    return {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": detail}
