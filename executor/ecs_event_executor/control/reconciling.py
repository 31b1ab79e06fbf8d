"""Find what events missed: active launches that stopped changing, checked against ECS itself.

EventBridge can drop an event after its retries and a Lambda can crash mid-write; ECS forgets a stopped task
about an hour after it stops. The reconciler runs on a schedule well inside that hour: it reads the sparse stale
index (active items only, oldest change first), asks ECS about their tasks with DescribeTasks (100 a call) and
applies what it learns through the status handler's own conditional writes. A task ECS no longer knows ends
FAILED with that reason; a launch whose queue message was lost is launched again (same attempt, same client
token, so a task that did start is found, not duplicated). Its cost follows the stale items only.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from ecs_event_executor.control import bus as bus_events
from ecs_event_executor.control.bus import ControlPlaneBus
from ecs_event_executor.control.environment import LambdaEnvironment
from ecs_event_executor.control.messages import RelaunchRequest
from ecs_event_executor.control.status_tracking import StatusResult, StatusSettings, StatusTracker
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

log = logging.getLogger(__name__)

# AWS limits DescribeTasks to 100 task ARNs per call.
DESCRIBE_BATCH = 100
# Used when the environment does not set STALE_AFTER_SECONDS or RECONCILE_MAX_ITEMS.
DEFAULT_STALE_AFTER_SECONDS = 600
DEFAULT_MAX_ITEMS_PER_RUN = 1000


@dataclass(frozen=True)
class ReconcilerSettings:
    status: StatusSettings
    # An active item unchanged for this long is checked. ECS keeps stopped tasks for about an hour, so this plus
    # the schedule's period must stay well below that.
    stale_after_seconds: int = DEFAULT_STALE_AFTER_SECONDS
    max_items_per_run: int = DEFAULT_MAX_ITEMS_PER_RUN

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcilerSettings:
        """Read the reconciler's environment; a missing or bad variable raises naming it."""
        read = LambdaEnvironment.read(env)
        return cls(
            status=StatusSettings.from_environment(read),
            stale_after_seconds=read.stale_after_seconds or DEFAULT_STALE_AFTER_SECONDS,
            max_items_per_run=read.reconcile_max_items or DEFAULT_MAX_ITEMS_PER_RUN,
        )


@dataclass
class ReconcileReport:
    checked: int = 0
    updated: int = 0
    lost: int = 0
    relaunched: int = 0
    unchanged: int = 0
    describe_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Reconciler:
    """One reconciliation pass; clients are injectable."""

    def __init__(
        self,
        settings: ReconcilerSettings,
        *,
        ecs: Any | None = None,
        table: TaskTable | None = None,
        bus: ControlPlaneBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._ecs = ecs
        self.table = table or TaskTable(settings.status.table_name, clock=clock)
        self.bus = bus or ControlPlaneBus(settings.status.event_bus_name)
        self.tracker = StatusTracker(settings.status, table=self.table, bus=self.bus)
        self._clock = clock

    @property
    def ecs(self) -> Any:
        if self._ecs is None:
            self._ecs = boto3.client("ecs")
        return self._ecs

    def run(self) -> ReconcileReport:
        """Check every stale active item once, then write the control-plane heartbeat."""
        report = ReconcileReport()
        now_ms = int(self._clock() * 1000)
        stale = self.table.stale_active(
            now_ms - self.settings.stale_after_seconds * 1000, limit=self.settings.max_items_per_run
        )
        report.checked = len(stale)
        by_cluster: dict[str, list[TaskItem]] = defaultdict(list)
        for item in stale:
            if item.task_arn:
                by_cluster[item.cluster_arn or self.settings.status.cluster or "default"].append(item)
            elif item.state is TaskState.LAUNCHING and (item.lease_until or 0) < now_ms:
                self._relaunch_lost_message(item, report)
            else:
                report.unchanged += 1
        for cluster, items in by_cluster.items():
            for start in range(0, len(items), DESCRIBE_BATCH):
                self._check_tasks(cluster, items[start : start + DESCRIBE_BATCH], report)
        self.table.write_heartbeat(**{f"last_{k}": v for k, v in report.as_dict().items()})
        log.info("reconciled", extra=report.as_dict())
        return report

    def _relaunch_lost_message(self, item: TaskItem, report: ReconcileReport) -> None:
        # Its queue message is gone (dead-lettered, or a relaunch publish was lost): launch the same attempt again.
        message = RelaunchRequest(launch_id=item.launch_id, attempt=item.attempt)
        self.bus.publish(
            bus_events.RELAUNCH_REQUESTED, message.model_dump(by_alias=True, mode="json"), required=True
        )
        self.table.touch(item.launch_id, item.attempt)
        report.relaunched += 1

    def _check_tasks(self, cluster: str, items: list[TaskItem], report: ReconcileReport) -> None:
        arns = [item.task_arn for item in items if item.task_arn]
        response = self.ecs.describe_tasks(cluster=cluster, tasks=arns)
        report.describe_calls += 1
        known = {task["taskArn"]: task for task in response.get("tasks", [])}
        for item in items:
            task = known.get(item.task_arn or "")
            if task is None:
                written, _ = self.table.fail_lost(
                    item.launch_id,
                    item.attempt,
                    task_arn=item.task_arn or "",
                    reason="ECS no longer knows the task (its state-change events were lost and it aged out of "
                    "DescribeTasks); its outcome is unknown",
                )
                report.lost += int(written)
                continue
            result = self.tracker.handle(_as_event(task))
            if result in (StatusResult.APPLIED, StatusResult.FINISHED, StatusResult.RELAUNCHED):
                report.updated += 1
            else:
                # Nothing new: re-stamp it so the next run does not check it again straight away.
                self.table.touch(item.launch_id, item.attempt)
                report.unchanged += 1


def _as_event(task: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap a DescribeTasks task as the "ECS Task State Change" event it corresponds to."""
    detail = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in task.items()}
    return {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": detail}
