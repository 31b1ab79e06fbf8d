"""Fixtures for the executor against moto: settings through Airflow's config, counted clients, workloads."""

from __future__ import annotations

import functools
import importlib
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

# Airflow reads AIRFLOW_HOME at import: keep the tests away from the developer's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "tests-only-secret")

import boto3
import pytest
from ecs_event_executor.control.messages import TaskKey, new_launch_id, utcnow
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.executor import AIRFLOW_VERSION, EcsEventExecutor

from tests.support.aws import REGION, create_queues, create_table


@dataclass
class RequestCounter:
    """Count HTTP requests made by clients, by (service, operation), at the botocore level.

    ``request-created`` fires once per request attempt (retries included), before moto answers it.
    """

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name
        client.meta.events.register(
            "request-created", lambda operation_name, **_: self._count(service, operation_name)
        )
        return client

    def _count(self, service: str, operation: str) -> None:
        self.calls[(service, operation)] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def by_service(self, service: str) -> int:
        return sum(n for (s, _), n in self.calls.items() if s == service)

    def reset(self) -> None:
        self.calls.clear()


class FakeClock:
    """A settable clock (seconds since the epoch) starting now."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ExecutorEnv:
    """Queue and table in moto, and a way to build executors whose clients are counted."""

    queue_url: str
    queue_arn: str
    table_name: str
    counter: RequestCounter
    clock: FakeClock
    factory_hooks: list[Callable[[str, Any], None]] = field(default_factory=list)
    clients_built: Counter[str] = field(default_factory=Counter)

    def client_factory(self, service: str) -> Any:
        client = self.counter.attach(boto3.client(service, region_name=REGION))
        self.clients_built[service] += 1
        for hook in self.factory_hooks:
            hook(service, client)
        return client

    def executor(
        self, *, team_name: str | None = None, job_id: int | str | None = 1, start: bool = True
    ) -> EcsEventExecutor:
        # Airflow 2.11's BaseExecutor takes no team_name (no multi-team).
        teams: dict[str, Any] = {"team_name": team_name} if team_name is not None else {}
        executor = EcsEventExecutor(
            **teams,
            client_factory=self.client_factory,
            clock=self.clock,
            sleep=self.clock.advance,
        )
        executor.job_id = job_id
        if start:
            executor.start()
        return executor

    def table(self, clock: Callable[[], float] | None = None) -> TaskTable:
        """The task table as the control plane writes it (uncounted client)."""
        return TaskTable(
            self.table_name, client=boto3.client("dynamodb", region_name=REGION), clock=clock or self.clock
        )

    def received(self) -> list[dict[str, Any]]:
        """Drain the launch queue (uncounted): the messages the executor sent, as received by the launcher."""
        sqs = boto3.client("sqs", region_name=REGION)
        out: list[dict[str, Any]] = []
        while True:
            resp = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            messages = resp.get("Messages", [])
            if not messages:
                return out
            out.extend(messages)
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


@pytest.fixture
def executor_env(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExecutorEnv]:
    """Create the table and the launch queue, and configure ``[ecs_event_executor]`` through the environment."""
    table = create_table()
    queue_url, queue_arn, _dlq = create_queues()
    settings = {
        "QUEUE_URL": queue_url,
        "TABLE_NAME": table,
        "REGION_NAME": REGION,
        "CONN_ID": "none",
        "LOG_GROUP": "/airflow/tasks",
        "LOG_STREAM_PREFIX": "airflow",
        "END_WAIT_TIMEOUT_SECONDS": "30",
    }
    for key, value in settings.items():
        monkeypatch.setenv(f"AIRFLOW__ECS_EVENT_EXECUTOR__{key}", value)
    yield ExecutorEnv(queue_url, queue_arn, table, RequestCounter(), FakeClock())


# Airflow 2.11 has no workloads: the scheduler queues the TaskInstance with its ``airflow tasks run`` command and
# hands the executor (key, command, queue, executor_config) tuples. The helpers below build what the installed
# version's scheduler builds, so the same tests run on every version.
AIRFLOW_2 = AIRFLOW_VERSION.major < 3


def airflow_3_only(reason: str) -> pytest.MarkDecorator:
    """Skip a test of an Airflow 3 feature on Airflow 2.11, saying which feature (not hidden: pytest -rs lists it)."""
    return pytest.mark.skipif(AIRFLOW_2, reason=f"Airflow 2.11 has no {reason}")


class TaskTuple(tuple[Any, ...]):
    """Airflow 2.11's queued task: the (key, command, queue, executor_config) tuple, with its TaskInstance."""

    ti: Any


@functools.cache
def _serialized_task() -> Any:
    if AIRFLOW_2:
        # Imported by name: the type checker reads Airflow 3.3, where these modules differ.
        dag2: Any = importlib.import_module("airflow.models.dag").DAG("example", schedule=None)
        importlib.import_module("airflow.operators.empty").EmptyOperator(task_id="t1", dag=dag2)
        serialized: Any = importlib.import_module("airflow.serialization.serialized_objects").SerializedDAG
        return serialized.from_dict(serialized.to_dict(dag2)).get_task("t1")

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow < 3.3
        from airflow.serialization.serialized_objects import (  # type: ignore[assignment]
            SerializedDAG as DagSerialization,
        )

    with DAG("example", schedule=None) as dag:
        EmptyOperator(task_id="t1")
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("t1")


def make_ti(
    run_id: str = "manual__2026-11-25",
    *,
    try_number: int = 1,
    executor_config: Any = None,
    external_executor_id: str | None = None,
) -> Any:
    """Return a real (not persisted) Airflow TaskInstance of example.t1."""
    from airflow.models.taskinstance import TaskInstance

    version: dict[str, Any] = {} if AIRFLOW_2 else {"dag_version_id": uuid.uuid4()}
    ti = TaskInstance(task=_serialized_task(), run_id=run_id, **version)
    ti.try_number = try_number
    ti.executor_config = executor_config
    ti.external_executor_id = external_executor_id
    return ti


def task_workload(
    run_id: str = "manual__2026-11-25", *, try_number: int = 1, executor_config: Any = None
) -> Any:
    """Return the ExecuteTask workload the scheduler builds (ExecuteTask.make) for a real TaskInstance."""
    ti = make_ti(run_id, try_number=try_number, executor_config=executor_config)
    return execute_task(ti)


def execute_task(ti: Any) -> Any:
    """Return the ExecuteTask workload of a (not persisted) TaskInstance, as the scheduler builds it (2.11: its
    task tuple, whose ``.ti`` is the TaskInstance)."""
    if AIRFLOW_2:
        queued = TaskTuple((ti.key, ti.command_as_list(local=True), ti.queue, ti.executor_config))
        queued.ti = ti
        return queued
    from airflow.executors import workloads

    if ti.dag_run is None and not hasattr(workloads, "ExecuteCallback"):
        # Airflow 3.1's ExecuteTask.make reads the dag run's trace context: build the same workload without it.
        return workloads.ExecuteTask(
            ti=workloads.TaskInstance.model_validate(ti, from_attributes=True),
            dag_rel_path=Path("example.py"),
            token="",
            log_path=None,
            bundle_info=workloads.BundleInfo(name="dags-folder"),
        )
    return workloads.ExecuteTask.make(
        ti, dag_rel_path=Path("example.py"), bundle_info=workloads.BundleInfo(name="dags-folder")
    )


def queue_all(executor: EcsEventExecutor, workloads: list[Any]) -> None:
    """Queue workloads as the scheduler does and let the executor process them."""
    for workload in workloads:
        if AIRFLOW_2:
            # BaseExecutor.queue_command: 2.11 only (the type checker reads 3.3).
            cast(Any, executor).queue_command(workload.ti, workload[1], queue=workload[2])
        else:
            executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=len(workloads))


def stored_launch(table: TaskTable, owner: str, task_id: str) -> str:
    """Create an item as the launcher would for a launch request of ``owner``; return its launch id."""
    from datetime import timedelta

    from ecs_event_executor.control.messages import LaunchRequest

    key = TaskKey(dag_id="example", task_id=task_id, run_id="manual__2026-11-25T00:00:00+00:00", try_number=1)
    now = utcnow()
    request = LaunchRequest(
        launch_id=new_launch_id(key),
        owner=owner,
        key=key,
        command=["true"],
        queued_at=now,
        launch_deadline=now + timedelta(seconds=600),
    )
    table.create_for_launch(request, lease_seconds=60)
    return request.launch_id


class StandInControlPlane:
    """Applies the executor's queue messages to the task table with the contract's own writes (no ECS).

    The loop test (test_loop.py) runs the real launcher and status handlers; these tests only need the table to
    move the way the contract moves it.
    """

    def __init__(self, env: ExecutorEnv) -> None:
        self.env = env
        self.table = env.table()
        self.messages: list[Any] = []
        self._versions: Counter[str] = Counter()

    def deliver(self) -> list[Any]:
        """Receive what the executor sent and apply it; return the parsed messages."""
        from ecs_event_executor.control.messages import (
            AdoptRequest,
            CancelRequest,
            LaunchRequest,
            PingRequest,
            parse_message,
        )

        parsed = [
            m
            for m in (parse_message(r["Body"]) for r in self.env.received())
            if not isinstance(m, PingRequest)
        ]
        for message in parsed:
            if isinstance(message, LaunchRequest):
                self.table.create_for_launch(message, lease_seconds=60)
            elif isinstance(message, CancelRequest):
                done, _item = self.table.finish_cancelled(message)
                if not done:
                    self.table.mark_cancel_requested(message.launch_id, reason=message.reason)
            elif isinstance(message, AdoptRequest):
                self.table.set_owner(message.launch_id, message.owner)
        self.messages.extend(parsed)
        return parsed

    def ecs(
        self,
        launch_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
        stop_code: str | None = None,
    ) -> None:
        """Apply an ECS-derived state to a launch, as the status handler does."""
        from ecs_event_executor.control.tasks.item import EcsSnapshot
        from ecs_event_executor.control.tasks.lifecycle import TaskState

        self._versions[launch_id] += 1
        arn = f"arn:aws:ecs:{REGION}:123456789012:task/airflow/{launch_id.replace('-', '')[:32]}"
        item = self.table.get(launch_id)
        assert item is not None
        if item.task_arn is None:
            self.table.record_launched(launch_id, item.attempt, task_arn=arn, cluster_arn=None)
        snap = EcsSnapshot(
            state=TaskState(state),
            task_arn=arn,
            version=self._versions[launch_id],
            last_status="STOPPED" if TaskState(state).terminal else state,
            reason=reason,
            stop_code=stop_code,
            exit_code=exit_code,
        )
        self.table.apply_ecs_event(launch_id, item.attempt, snap)


@pytest.fixture
def control(executor_env: ExecutorEnv) -> StandInControlPlane:
    return StandInControlPlane(executor_env)
