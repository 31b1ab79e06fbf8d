"""Every try's log, running or finished: the container's awslogs output and the control plane's record, the
container's own failure reason (OutOfMemoryError) in ``show`` and in the log, and a failed try's info."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from ecs_event_executor.cli import main
from ecs_event_executor.executor import EcsEventExecutor
from ecs_event_executor.log_config import EcsTaskLogReader

from tests.conftest import ControlPlane
from tests.executor.conftest import (
    AIRFLOW_2,
    AIRFLOW_VERSION,
    ExecutorEnv,
    StandInControlPlane,
    make_ti,
    queue_all,
    task_workload,
)
from tests.support.aws import REGION
from tests.support.ecs_events import task_event
from tests.support.handlers import deliver, launch

pytestmark = pytest.mark.compat

LOG_GROUP = "/airflow/tasks"
OOM = "OutOfMemoryError: Container killed due to memory usage"


def _write_container_log(task_arn: str, lines: list[str]) -> str:
    """Put ``lines`` in the task's awslogs stream as ECS's awslogs driver would; return the stream name."""
    logs = boto3.client("logs", region_name=REGION)
    stream = f"airflow/base/{task_arn.rsplit('/', 1)[-1]}"
    if not logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]:
        logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=stream,
        # CloudWatch Logs refuses events older than 14 days: stamp them now.
        logEvents=[
            {"timestamp": int(time.time() * 1000) + i, "message": line} for i, line in enumerate(lines)
        ],
    )
    return stream


def _history(try_number: int, launch_id: str) -> Any:
    """A TaskInstanceHistory row as Airflow's log endpoint passes it for an earlier try (not a TaskInstance)."""
    return SimpleNamespace(
        dag_id="example",
        task_id="t1",
        run_id="manual__2026-11-25",
        map_index=-1,
        try_number=try_number,
        external_executor_id=launch_id,
        state="failed",
    )


def _text(response: tuple[list[str], list[str] | None]) -> str:
    sources, logs = response
    return "\n".join(sources + (logs or []))


def test_out_of_memory_is_named_in_show_and_in_the_task_log(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {
        "QUEUE_URL": control_plane.queue_url,
        "TABLE_NAME": control_plane.table,
        "REGION_NAME": REGION,
        "CONN_ID": "none",
        "LOG_GROUP": LOG_GROUP,
    }.items():
        monkeypatch.setenv(f"AIRFLOW__ECS_EVENT_EXECUTOR__{key}", value)
    launch_id, task = launch(control_plane)
    _write_container_log(task["taskArn"], ["loading 40 GB into a DataFrame"])
    stopped = task_event(
        task,
        last_status="STOPPED",
        version=3,
        exit_code=137,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
        container_reason=OOM,
    )
    assert deliver([task_event(task, last_status="RUNNING", version=2), stopped]) == []

    assert main(["--table", control_plane.table, "show", launch_id]) == 0
    shown = capsys.readouterr().out
    assert f"the Airflow container exited with code 137: {OOM}" in shown

    reader = EcsTaskLogReader(EcsEventExecutor(client_factory=lambda s: boto3.client(s, region_name=REGION)))
    log = _text(reader.read("ignored/relative/path", _history(1, launch_id)))
    assert "loading 40 GB into a DataFrame" in log
    assert f"exited with code 137: {OOM}" in log


def _two_tries(
    executor: EcsEventExecutor, control: StandInControlPlane, run_id: str, *, second: str = "SUCCEEDED"
) -> list[str]:
    """Run try 1 (fails, exit code 1) and try 2 of example.t1 in ``run_id``; return their launch ids."""
    launches = []
    for try_number, (state, code) in enumerate([("FAILED", 1), (second, 0)], start=1):
        queue_all(executor, [task_workload(run_id, try_number=try_number)])
        (request,) = control.deliver()
        control.ecs(request.launch_id, "RUNNING")
        item = control.table.get(request.launch_id)
        assert item is not None and item.task_arn
        _write_container_log(item.task_arn, [f"output of try {try_number}"])
        if state != "RUNNING":
            control.ecs(
                request.launch_id, state, exit_code=code, reason="the Airflow container exited with code 1"
            )
        executor.sync()
        launches.append(request.launch_id)
    return launches


def test_every_try_is_served_after_it_ended(executor_env: ExecutorEnv, control: StandInControlPlane) -> None:
    executor = executor_env.executor()
    launches = _two_tries(executor, control, "retried")

    # The API server's reader is a fresh executor: it knows each try only by its external executor id.
    reader = EcsTaskLogReader(executor_env.executor(start=False))
    first = _text(reader.read("p", _history(1, launches[0])))
    assert "output of try 1" in first and "output of try 2" not in first
    assert "is FAILED" in first and "exited with code 1" in first
    current = make_ti("retried", try_number=2, external_executor_id=launches[1])
    current.state = "success"
    second = _text(reader.read("p", current))
    assert "output of try 2" in second and "is SUCCEEDED" in second and "output of try 1" not in second
    # A history row whose id names another try's launch is not shown as this try.
    assert "output of try" not in _text(reader.read("p", _history(1, launches[1])))
    # While a try runs Airflow asks the executor instead, for the same log: the reader stays out of its way.
    current.state = "running"
    assert reader.read("p", current) == ([], None)
    assert "output of try 2" in "\n".join(executor.get_task_log(current, 2)[1])


def test_the_log_ends_with_the_control_plane_record_stamped_when_the_try_ended(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    queue_all(executor, [task_workload("stamped")])
    (request,) = control.deliver()
    control.ecs(request.launch_id, "RUNNING")
    item = control.table.get(request.launch_id)
    assert item is not None and item.task_arn
    _write_container_log(
        item.task_arn, ['{"timestamp": "2026-01-01T00:00:00Z", "level": "info", "event": "hi"}']
    )
    control.ecs(request.launch_id, "FAILED", exit_code=2, reason="the Airflow container exited with code 2")
    _sources, lines = executor.get_task_log(make_ti("stamped", external_executor_id=request.launch_id), 1)
    assert lines[0].startswith('{"timestamp": "2026-01-01')
    records = [json.loads(line) for line in lines[1:]]
    assert records[0]["level"] == "error" and "is FAILED" in records[0]["event"]
    assert any("exited with code 2" in r["event"] for r in records)
    assert all(r["timestamp"] for r in records)


def test_a_failed_try_info_carries_the_reason_and_the_last_container_lines(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    queue_all(executor, [task_workload("crashed")])
    (request,) = control.deliver()
    control.ecs(request.launch_id, "RUNNING")
    item = control.table.get(request.launch_id)
    assert item is not None and item.task_arn
    lines = [f"line {i}" for i in range(30)] + [
        json.dumps({"level": "error", "event": "Task failed with exception", "logger": "task"})
    ]
    stream = _write_container_log(item.task_arn, lines)
    control.ecs(
        request.launch_id,
        "FAILED",
        exit_code=137,
        reason=f"the Airflow container exited with code 137: {OOM}",
    )
    executor_env.counter.reset()
    executor.sync()
    ((_state, info),) = executor.get_event_buffer().values()
    assert info.startswith(f"the Airflow container exited with code 137: {OOM}")
    assert f"last lines of the container's log {stream}:" in info
    assert info.rstrip().endswith("ERROR Task failed with exception")
    assert "line 29" in info and "line 20" not in info  # the last 10 lines, not the whole stream
    # One GetLogEvents for the tail, besides the change-feed read.
    assert executor_env.counter.calls[("logs", "GetLogEvents")] == 1


def test_a_burst_of_failures_reads_at_most_ten_tails_per_loop(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    queue_all(executor, [task_workload(f"burst-{i}") for i in range(12)])
    for request in control.deliver():
        control.ecs(
            request.launch_id, "FAILED", exit_code=1, reason="the Airflow container exited with code 1"
        )
    executor_env.counter.reset()
    executor.sync()
    infos = [info for _state, info in executor.get_event_buffer().values()]
    assert len(infos) == 12 and all(i.startswith("the Airflow container exited with code 1") for i in infos)
    # Ten tails (their streams are empty here), the other two carry the reason only: the loop is not held.
    assert executor_env.counter.calls[("logs", "GetLogEvents")] == 10
    assert sum("container's log" in i for i in infos) == 10


def test_get_task_log_of_an_earlier_try_reads_its_launch_from_the_task_instance_history(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    import airflow.models
    from airflow import settings
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import insert, text

    executor = executor_env.executor()
    launches = _two_tries(executor, control, "history", second="RUNNING")
    # Airflow's metadata database, reduced to the table the lookup reads: try 1 as Airflow archived it.
    airflow.models.import_all_models()
    TaskInstanceHistory.__table__.create(settings.engine, checkfirst=True)
    with create_session() as session:
        # Airflow turns SQLite's foreign keys on; the task instance and run rows this one refers to are not here.
        session.execute(text("PRAGMA foreign_keys=OFF"))
        session.execute(
            insert(TaskInstanceHistory).values(
                # 3.x keys a history row to its task instance's id (a string column on 3.1, a UUID from 3.2);
                # 2.11's rows have none.
                **({} if AIRFLOW_2 else {"task_instance_id": _history_id()}),
                dag_id="example",
                task_id="t1",
                run_id="history",
                map_index=-1,
                try_number=1,
                pool="default_pool",
                external_executor_id=launches[0],
            )
        )
    # Try 2 runs: Airflow asks the executor, with the current task instance, for try 1's log too.
    current = make_ti("history", try_number=2, external_executor_id=launches[1])
    current.state = "running"
    first = "\n".join(executor.get_task_log(current, 1)[1])
    assert "output of try 1" in first and "is FAILED" in first and "output of try 2" not in first
    assert "output of try 2" in "\n".join(executor.get_task_log(current, 2)[1])


def _history_id() -> Any:
    return uuid.uuid4() if AIRFLOW_VERSION.release[:2] >= (3, 2) else str(uuid.uuid4())
