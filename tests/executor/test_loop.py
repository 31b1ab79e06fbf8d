"""The whole loop: executor -> SQS -> real launcher handler -> moto ECS -> ECS events -> real status handler -> sync().

moto runs no event source mappings or EventBridge rules, so the test plays AWS's part: it receives the queue's
messages and hands them to the launcher in Lambda's SQS event shape, and it builds "ECS Task State Change" events
in the documented shape from the tasks moto started and hands them to the status handler.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from ecs_event_executor.control.ecs_state import LAUNCH_ID_ENV
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.executor import EcsEventExecutor

from tests.conftest import ControlPlane
from tests.executor.conftest import RequestCounter, make_ti, queue_all, task_workload
from tests.support.aws import REGION, LambdaContextStub, sqs_event
from tests.support.ecs_events import task_event
from tests.support.handlers import deliver

pytestmark = pytest.mark.compat


class Loop:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.ecs = boto3.client("ecs", region_name=REGION)
        self.versions: dict[str, int] = {}

    def run_launcher(self) -> dict[str, Any]:
        """Deliver everything on the launch queue to the launcher Lambda, as an event source mapping would."""
        from lambdas.launcher import handler as launcher

        result: dict[str, Any] = {"batchItemFailures": []}
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.cp.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return result
            out = launcher.handler(sqs_event(messages, self.cp.queue_arn), LambdaContextStub())
            failed = {f["itemIdentifier"] for f in out.get("batchItemFailures", [])}
            result["batchItemFailures"].extend(failed)
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.cp.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )

    def tasks(self) -> dict[str, dict[str, Any]]:
        """The ECS tasks moto started, by the launch id their container override environment carries."""
        arns = self.ecs.list_tasks(cluster=self.cp.ecs.cluster)["taskArns"]
        if not arns:
            return {}
        described = self.ecs.describe_tasks(cluster=self.cp.ecs.cluster, tasks=arns)["tasks"]
        by_launch = {}
        for task in described:
            env = {
                kv["name"]: kv["value"]
                for o in task["overrides"]["containerOverrides"]
                for kv in o.get("environment", [])
            }
            by_launch[env[LAUNCH_ID_ENV]] = task
        return by_launch

    def event(self, task: dict[str, Any], last_status: str, **fields: Any) -> None:
        """Send one ECS event for ``task`` to the status handler, through the status queue's event source."""
        self.versions[task["taskArn"]] = self.versions.get(task["taskArn"], 0) + 1
        event = task_event(task, last_status=last_status, version=self.versions[task["taskArn"]], **fields)
        assert deliver([event]) == []

    def lifecycle(self, task: dict[str, Any], *, exit_code: int | None, **stop: Any) -> None:
        for step in ("PROVISIONING", "PENDING", "RUNNING"):
            self.event(task, step)
        self.event(task, "STOPPING", exit_code=exit_code, **stop)
        self.event(task, "STOPPED", exit_code=exit_code, **stop)


@pytest.fixture
def loop_executor(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> tuple[EcsEventExecutor, RequestCounter]:
    for key, value in {
        "QUEUE_URL": control_plane.queue_url,
        "TABLE_NAME": control_plane.table,
        "REGION_NAME": REGION,
        "CONN_ID": "none",
        "CONTAINER_NAME": "base",
        "END_WAIT_TIMEOUT_SECONDS": "0",
        # One ECS task per launch: a task that never starts fails at once (relaunches need the stack's event bus).
        "MAX_RUN_TASK_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__ECS_EVENT_EXECUTOR__{key}", value)
    counter = RequestCounter()
    executor = EcsEventExecutor(
        client_factory=lambda service: counter.attach(boto3.client(service, region_name=REGION))
    )
    executor.job_id = 11
    executor.start()
    return executor, counter


def test_executor_launcher_ecs_status_loop(
    control_plane: ControlPlane, loop_executor: tuple[EcsEventExecutor, RequestCounter]
) -> None:
    executor, counter = loop_executor
    loop = Loop(control_plane)
    runs = ["succeeds", "fails", "revoked-running", "never-starts"]
    workloads = {
        r: task_workload(r, executor_config={"overrides": {"cpu": "512", "memory": "1024"}}) for r in runs
    }
    queue_all(executor, list(workloads.values()))
    external_ids = {
        r: info
        for (key, (_state, info)) in executor.get_event_buffer().items()
        for r in runs
        if key == workloads[r].ti.key
    }

    assert loop.run_launcher()["batchItemFailures"] == []
    tasks = loop.tasks()
    assert set(tasks) == set(
        external_ids.values()
    )  # one ECS task per launch, found by the launch id it carries
    task_of = {r: tasks[external_ids[r]] for r in runs}
    assert task_of["succeeds"]["overrides"]["cpu"] == "512"  # executor_config reached RunTask

    # The task runs: recorded for operators, not news for the executor (it reported running when it queued).
    for step in ("PROVISIONING", "PENDING", "RUNNING"):
        loop.event(task_of["succeeds"], step)
    executor.sync()
    assert executor.get_event_buffer() == {}
    table = TaskTable(control_plane.table, client=boto3.client("dynamodb", region_name=REGION))
    assert table.get(external_ids["succeeds"]).state is TaskState.RUNNING  # type: ignore[union-attr]

    loop.event(task_of["succeeds"], "STOPPING", exit_code=0)
    loop.event(
        task_of["succeeds"],
        "STOPPED",
        exit_code=0,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
    )
    loop.lifecycle(
        task_of["fails"],
        exit_code=1,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
    )
    loop.event(task_of["never-starts"], "PROVISIONING")
    loop.event(
        task_of["never-starts"],
        "STOPPED",
        stop_code="TaskFailedToStart",
        stopped_reason="CannotPullContainerError: pull access denied",
        started=False,
    )

    # Revoke after launch: the executor sends a cancel; the launcher stops the ECS task; its STOPPED event ends it.
    for step in ("PROVISIONING", "PENDING", "RUNNING"):
        loop.event(task_of["revoked-running"], step)
    executor.revoke_task(ti=make_ti("revoked-running", external_executor_id=external_ids["revoked-running"]))
    assert loop.run_launcher()["batchItemFailures"] == []
    stopped = loop.ecs.describe_tasks(
        cluster=control_plane.ecs.cluster, tasks=[task_of["revoked-running"]["taskArn"]]
    )["tasks"][0]
    assert stopped["desiredStatus"] == "STOPPED"  # StopTask came from the launcher, not from the executor
    loop.event(
        task_of["revoked-running"],
        "STOPPED",
        exit_code=137,
        stop_code="UserInitiated",
        stopped_reason="revoked by the Airflow scheduler",
    )

    counter.reset()
    executor.sync()
    buffer = executor.get_event_buffer()
    assert buffer[workloads["succeeds"].ti.key] == ("success", None)
    assert buffer[workloads["fails"].ti.key][0] == "failed"
    assert "exit code 1" in buffer[workloads["fails"].ti.key][1]
    # Never started, and no attempts left: failed, with ECS's reason in the info (and so in the task's log).
    state, info = buffer[workloads["never-starts"].ti.key]
    assert state == "failed" and "CannotPullContainerError" in info
    # Revoked: Airflow requeues it; nothing may appear in the event buffer for it.
    assert workloads["revoked-running"].ti.key not in buffer
    assert counter.by_service("ecs") == 0 and set(counter.calls) == {("dynamodb", "Query")}

    revoked = table.get(external_ids["revoked-running"])
    assert revoked is not None and revoked.state in (TaskState.CANCELLED, TaskState.FAILED)
    assert executor.running == set()
