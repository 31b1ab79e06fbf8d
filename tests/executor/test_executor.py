"""EcsEventExecutor against moto: queueing, sync cost, states, adoption, revoke, terminate, credentials, logs."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from ecs_event_executor.control.messages import (
    AdoptRequest,
    CancelRequest,
    LaunchRequest,
    PingRequest,
    parse_message,
)
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.executor import EcsEventExecutor, EcsEventExecutorError

from tests.executor.conftest import (
    AIRFLOW_2,
    ExecutorEnv,
    StandInControlPlane,
    airflow_3_only,
    make_ti,
    queue_all,
    stored_launch,
    task_workload,
)
from tests.support.aws import REGION

pytestmark = pytest.mark.compat


def sent(env: ExecutorEnv) -> list[Any]:
    """The messages on the launch queue, without the health check's pings."""
    return [m for m in (parse_message(r["Body"]) for r in env.received()) if not isinstance(m, PingRequest)]


def test_init_is_cheap_and_calls_no_aws(executor_env: ExecutorEnv) -> None:
    EcsEventExecutor(client_factory=executor_env.client_factory)
    assert executor_env.counter.total == 0
    assert not executor_env.clients_built


@pytest.mark.parametrize(
    ("team", "variable"),
    [
        (None, "AIRFLOW__ECS_EVENT_EXECUTOR__QUEUE_URL"),
        ("blue", "AIRFLOW__BLUE___ECS_EVENT_EXECUTOR__QUEUE_URL"),
    ],
)
def test_missing_setting_fails_start_naming_key_and_variable(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch, team: str | None, variable: str
) -> None:
    monkeypatch.delenv("AIRFLOW__ECS_EVENT_EXECUTOR__QUEUE_URL")
    if team is not None and AIRFLOW_2:
        pytest.skip("Airflow 2.11 has no multi-team (no team_name on its BaseExecutor)")
    teams: dict[str, Any] = {"team_name": team} if team is not None else {}
    executor = EcsEventExecutor(**teams, client_factory=executor_env.client_factory)
    with pytest.raises(EcsEventExecutorError, match="queue_url") as err:
        executor.start()
    assert variable in str(err.value)


def test_invalid_setting_fails_start(executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__SYNC_OVERLAP_SECONDS", "soon")
    with pytest.raises(
        EcsEventExecutorError,
        match=r"sync_overlap_seconds.*AIRFLOW__ECS_EVENT_EXECUTOR__SYNC_OVERLAP_SECONDS",
    ):
        executor_env.executor()


@airflow_3_only("multi-team (no team_name on its BaseExecutor)")
def test_team_settings_come_from_the_team_variables(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow resolves a team's section from the team's own variables, not from the global ones.
    for key in ("QUEUE_URL", "TABLE_NAME", "REGION_NAME", "CONN_ID"):
        monkeypatch.setenv(
            f"AIRFLOW__BLUE___ECS_EVENT_EXECUTOR__{key}",
            f"{os.environ[f'AIRFLOW__ECS_EVENT_EXECUTOR__{key}']}",
        )
    monkeypatch.setenv("AIRFLOW__BLUE___ECS_EVENT_EXECUTOR__CONTAINER_NAME", "blue-worker")
    executor = executor_env.executor(team_name="blue", job_id=7)
    assert executor.settings.container_name == "blue-worker"
    assert executor.owner == "blue:7"


def test_health_check_reads_table_and_pings_queue(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor(job_id=42)
    assert executor.owner == "default:42"
    assert executor_env.counter.calls == {
        ("dynamodb", "Query"): 1,
        ("dynamodb", "GetItem"): 1,  # the control plane's heartbeat
        ("sqs", "SendMessageBatch"): 1,
    }
    assert [parse_message(m["Body"]) for m in executor_env.received()] == [PingRequest(owner="default:42")]


def test_health_check_fails_on_a_stale_control_plane_heartbeat(executor_env: ExecutorEnv) -> None:
    executor_env.table(clock=lambda: executor_env.clock() - 3600).write_heartbeat(last_checked=0)
    with pytest.raises(EcsEventExecutorError, match=r"heartbeat is 3600 s old \(limit 1800 s\)"):
        executor_env.executor()
    executor_env.table().write_heartbeat(last_checked=0)
    assert executor_env.executor().owner


def test_health_check_names_what_is_unreachable(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__TABLE_NAME", "no-such-table")
    with pytest.raises(EcsEventExecutorError, match="task table 'no-such-table' is not readable"):
        executor_env.executor()


def test_queueing_100_workloads_takes_at_most_10_sqs_requests_and_no_ecs(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    executor_env.counter.reset()
    workloads = [task_workload(f"run-{i}") for i in range(100)]

    queue_all(executor, workloads)

    assert executor_env.counter.calls == {("sqs", "SendMessageBatch"): 10}
    assert executor_env.counter.by_service("ecs") == 0
    assert not executor.queued_tasks
    assert executor.running == {w.ti.key for w in workloads}
    launches = sent(executor_env)
    assert len(launches) == 100 and all(isinstance(m, LaunchRequest) for m in launches)
    by_run = {m.key.run_id: m for m in launches}
    first = by_run["run-0"]
    assert first.owner == executor.owner
    if AIRFLOW_2:
        # 2.11: the CLI command the scheduler built (TaskInstance.command_as_list(local=True)).
        assert first.command[:7] == ["airflow", "tasks", "run", "example", "t1", "run-0", "--local"]
    else:
        assert first.command[:4] == [
            "python",
            "-m",
            "airflow.sdk.execution_time.execute_workload",
            "--json-string",
        ]
        assert json.loads(first.command[4])["ti"]["run_id"] == "run-0"
    assert (
        first.launch_deadline is not None
        and (first.launch_deadline - first.queued_at).total_seconds() == 600 - 180  # the start-up margin
    )
    # The launch id is reported as the external executor id, so another scheduler can adopt the task.
    buffer = executor.get_event_buffer()
    assert {info for _state, info in buffer.values()} == {m.launch_id for m in launches}
    assert all(state == "running" for state, _info in buffer.values())


def test_invalid_executor_config_fails_that_task_naming_the_field(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    good = task_workload("good", executor_config={"overrides": {"cpu": "512"}})
    bad = task_workload(
        "bad", executor_config={"overrides": {"containerOverrides": [{"name": "base", "memory": "lots"}]}}
    )
    reserved = task_workload("reserved", executor_config={"name": "mine"})

    queue_all(executor, [good, bad, reserved])

    buffer = executor.get_event_buffer()
    state, info = buffer[bad.ti.key]
    assert state == "failed"
    assert "executor_config.overrides.containerOverrides[0].memory" in info
    assert "may not be overridden" in buffer[reserved.ti.key][1]
    assert buffer[good.ti.key][0] == "running"
    events = [(e.event, e.extra) for e in executor._task_event_logs]
    assert any("containerOverrides[0].memory" in (extra or "") for _event, extra in events)
    launches = sent(executor_env)
    assert [m.key.run_id for m in launches] == ["good"]
    assert launches[0].executor_config == {"overrides": {"cpu": "512"}}


def test_overrides_over_the_ecs_limit_fail_naming_the_limit(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    env = [{"name": f"V{i}", "value": "x" * 100} for i in range(90)]
    big = task_workload(
        "big", executor_config={"overrides": {"containerOverrides": [{"name": "base", "environment": env}]}}
    )
    queue_all(executor, [big])
    state, info = executor.get_event_buffer()[big.ti.key]
    assert state == "failed" and "8192" in info
    assert sent(executor_env) == []


def test_sync_reports_each_state_once_and_ignores_other_launches(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    workloads = [task_workload(f"run-{i}") for i in range(4)]
    queue_all(executor, workloads)
    ok, bad, cancelled, running = (m.launch_id for m in sorted(control.deliver(), key=lambda m: m.key.run_id))
    executor.get_event_buffer()
    control.ecs(ok, "SUCCEEDED", exit_code=0)
    control.ecs(
        bad,
        "FAILED",
        exit_code=1,
        reason="Essential container in task exited",
        stop_code="EssentialContainerExited",
    )
    control.table.finish_cancelled(
        CancelRequest(launch_id=cancelled, owner=executor.owner or "", reason="stopped by an operator")
    )
    control.ecs(running, "RUNNING")
    # A launch in our feed that we do not track (revoked earlier, or written by hand) is not reported.
    foreign = stored_launch(control.table, executor.owner or "", "foreign")
    control.ecs(foreign, "SUCCEEDED", exit_code=0)

    executor.sync()
    buffer = executor.get_event_buffer()
    keys = [w.ti.key for w in workloads]
    assert buffer[keys[0]] == ("success", None)
    assert buffer[keys[1]][0] == "failed"
    assert "Essential container in task exited" in buffer[keys[1]][1] and "exit code 1" in buffer[keys[1]][1]
    assert buffer[keys[2]] == ("failed", "cancelled: stopped by an operator")
    # Running was reported when the task was queued (with its launch id); the feed carries outcomes only.
    assert keys[3] not in buffer
    assert executor.running == {keys[3]}
    assert any("exit code 1" in (e.extra or "") for e in executor._task_event_logs)

    # The overlap re-reads the same versions: nothing is reported twice.
    executor.sync()
    assert executor.get_event_buffer() == {}
    control.ecs(running, "SUCCEEDED", exit_code=0)
    executor.sync()
    assert executor.get_event_buffer() == {keys[3]: ("success", None)}


def test_adoption_by_a_fresh_executor(executor_env: ExecutorEnv, control: StandInControlPlane) -> None:
    old = executor_env.executor(job_id=1)
    runs = ["running", "finished", "launching"]
    queue_all(old, [task_workload(r) for r in runs])
    launch_of = {m.key.run_id: m.launch_id for m in control.deliver()}
    control.ecs(launch_of["running"], "RUNNING")
    control.ecs(launch_of["finished"], "SUCCEEDED", exit_code=0)
    # The old scheduler dies here. The new one gets the task instances with their external executor ids.
    tis = [make_ti(r, external_executor_id=launch_of[r]) for r in runs]
    strangers = [make_ti("unknown", external_executor_id="0" * 24 + "-1-deadbeef"), make_ti("no-id")]

    new = executor_env.executor(job_id=2)
    executor_env.counter.reset()
    not_adopted = new.try_adopt_task_instances(tis + strangers)

    assert not_adopted == strangers
    assert executor_env.counter.calls == {("dynamodb", "BatchGetItem"): 1, ("sqs", "SendMessageBatch"): 1}
    assert executor_env.counter.by_service("ecs") == 0
    # Finished while nobody watched: reported at once.
    assert new.get_event_buffer() == {tis[1].key: ("success", None)}
    adopts = control.deliver()
    assert sorted(adopts, key=lambda m: m.launch_id) == sorted(
        [AdoptRequest(launch_id=launch_of[r], owner="default:2") for r in ("running", "launching")],
        key=lambda m: m.launch_id,
    )
    # Ownership moved: the new executor's feed sees later changes, the old one's does not.
    control.ecs(launch_of["running"], "SUCCEEDED", exit_code=0)
    control.ecs(launch_of["launching"], "FAILED", reason="CannotPullContainerError")
    old.get_event_buffer()
    new.sync()
    old.sync()
    buffer = new.get_event_buffer()
    assert buffer[tis[0].key] == ("success", None)
    assert buffer[tis[2].key][0] == "failed" and "CannotPullContainerError" in buffer[tis[2].key][1]
    # (the old one, were it alive, still sees only what was never moved: the task that had finished)
    assert set(old.get_event_buffer()) == {tis[1].key}
    assert not new.running


def test_revoke_before_launch_sends_a_cancel_and_forgets_the_task(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    workload = task_workload("stuck")
    queue_all(executor, [workload])
    (launch,) = sent(executor_env)
    executor.get_event_buffer()
    ti = make_ti("stuck", external_executor_id=launch.launch_id)

    executor.revoke_task(ti=ti)

    assert executor.running == set()
    (cancel,) = sent(executor_env)
    assert isinstance(cancel, CancelRequest) and cancel.launch_id == launch.launch_id
    # The launcher applies the cancel before the launch arrives: the item is CANCELLED, the launch does nothing.
    control.table.finish_cancelled(cancel)
    control.table.create_for_launch(launch, lease_seconds=60)
    assert control.table.get(launch.launch_id).state is TaskState.CANCELLED  # type: ignore[union-attr]
    executor.sync()
    # Revoking must not put anything in the event buffer: Airflow requeues the task itself.
    assert executor.get_event_buffer() == {}
    # The requeued task is a new launch with a new launch id.
    queue_all(executor, [task_workload("stuck")])
    (again,) = sent(executor_env)
    assert again.launch_id != launch.launch_id and again.key == launch.key


def test_revoke_of_an_unsent_launch_just_drops_it(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    _fail_calls(executor_env, "sqs", "SendMessageBatch", "ServiceUnavailable", times=4)
    executor.clients.reset()  # the next SQS client is built with the injected failure
    workload = task_workload("never-sent")
    queue_all(executor, [workload])
    assert len(executor._outbox) == 1
    executor.revoke_task(ti=make_ti("never-sent"))
    assert executor._outbox == []
    executor_env.clock.advance(5)
    executor.sync()
    assert sent(executor_env) == []


def test_terminate_cancels_every_task_and_waits_bounded(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    queue_all(executor, [task_workload(f"run-{i}") for i in range(3)])
    launches = control.deliver()
    control.ecs(launches[0].launch_id, "RUNNING")
    executor_env.counter.reset()
    started = executor_env.clock.now

    executor.terminate()

    cancels = control.deliver()
    assert sorted(m.launch_id for m in cancels) == sorted(m.launch_id for m in launches)
    assert all(isinstance(m, CancelRequest) and "terminated" in m.reason for m in cancels)
    assert executor_env.counter.by_service("ecs") == 0
    # Nothing reported the tasks finished, so end() gave up at end_wait_timeout_seconds (30 in these tests).
    assert executor_env.clock.now - started == pytest.approx(30)


def test_end_returns_when_the_tasks_finish(executor_env: ExecutorEnv, control: StandInControlPlane) -> None:
    executor = executor_env.executor()
    workloads = [task_workload(f"run-{i}") for i in range(2)]
    queue_all(executor, workloads)
    launches = control.deliver()
    executor.get_event_buffer()

    def finish_while_waiting(seconds: float) -> None:
        executor_env.clock.advance(seconds)
        for message in launches:
            control.ecs(message.launch_id, "SUCCEEDED", exit_code=0)

    executor._sleep = finish_while_waiting
    started = executor_env.clock.now
    executor.end()
    assert executor_env.clock.now - started < 5
    assert set(executor.get_event_buffer()) == {w.ti.key for w in workloads}


def _fail_calls(env: ExecutorEnv, service: str, operation: str, code: str, *, times: int) -> None:
    """Make the next ``times`` calls of ``operation`` by the executor's current clients fail with ``code``."""
    remaining = {"n": times}

    def hook(built_service: str, client: Any) -> None:
        if built_service != service:
            return

        def fail(**_: Any) -> None:
            if remaining["n"] > 0:
                remaining["n"] -= 1
                raise ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)

        client.meta.events.register(f"before-call.{service}.{operation}", fail)

    env.factory_hooks.append(hook)


def test_credential_error_in_the_middle_of_sync_recovers_on_a_later_sync(
    executor_env: ExecutorEnv, control: StandInControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__CHECK_HEALTH_ON_STARTUP", "false")
    executor = executor_env.executor()
    workload = task_workload("creds")
    queue_all(executor, [workload])
    (launch,) = control.deliver()
    executor.get_event_buffer()
    control.ecs(launch.launch_id, "SUCCEEDED", exit_code=0)
    assert executor_env.clients_built["dynamodb"] == 0
    _fail_calls(executor_env, "dynamodb", "Query", "ExpiredTokenException", times=1)

    executor.sync()  # raises nothing into the scheduler
    assert executor.get_event_buffer() == {}
    assert executor_env.clients_built["dynamodb"] == 1

    executor.sync()  # backing off: no request at all
    assert executor_env.clients_built["dynamodb"] == 1

    executor_env.clock.advance(2)
    executor.sync()  # fresh clients, the change is read
    assert executor_env.clients_built["dynamodb"] == 2
    assert executor.get_event_buffer() == {workload.ti.key: ("success", None)}


def test_no_credentials_while_queueing_keeps_the_launch_for_the_next_loop(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    _fail_calls(executor_env, "sqs", "SendMessageBatch", "InvalidClientTokenId", times=1)
    executor.clients.reset()  # the next SQS client is built with the injected failure
    workload = task_workload("later")
    queue_all(executor, [workload])
    assert sent(executor_env) == [] and len(executor._outbox) == 1
    executor_env.clock.advance(2)
    executor.sync()
    (launch,) = sent(executor_env)
    assert launch.key.run_id == "later" and executor._outbox == []


@airflow_3_only("callback workloads")
def test_callback_workloads_run_through_the_same_path(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    """On 3.2 the callback key is the id string, on 3.3 a CallbackKey object: both run and report."""
    import uuid
    from pathlib import Path

    from airflow.executors import workloads

    if not hasattr(workloads, "ExecuteCallback"):
        pytest.skip("Airflow 3.1 has no executor callbacks")
    from airflow.executors.workloads import BundleInfo, ExecuteCallback
    from airflow.executors.workloads.callback import CallbackDTO, CallbackFetchMethod

    executor = executor_env.executor()
    callback = ExecuteCallback(
        callback=CallbackDTO(
            id=str(uuid.uuid4()), fetch_method=CallbackFetchMethod.IMPORT_PATH, data={"path": "mod.notify"}
        ),
        dag_rel_path=Path("example.py"),
        token="t",
        bundle_info=BundleInfo(name="dags-folder"),
        log_path="executor_callbacks/x",
    )
    executor.queue_workload(callback, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=1)
    assert not executor.queued_callbacks
    (launch,) = control.deliver()
    assert launch.key.task_id == callback.callback.id
    executor.get_event_buffer()
    control.ecs(launch.launch_id, "SUCCEEDED", exit_code=0)
    executor.sync()
    assert executor.get_event_buffer() == {callback.callback.key: ("success", None)}


def test_get_task_log_reads_the_record_and_the_awslogs_stream(
    executor_env: ExecutorEnv, control: StandInControlPlane
) -> None:
    executor = executor_env.executor()
    queue_all(executor, [task_workload("logged")])
    (launch,) = control.deliver()
    control.ecs(launch.launch_id, "RUNNING")
    item = control.table.get(launch.launch_id)
    assert item is not None and item.task_arn
    logs = boto3.client("logs", region_name=REGION)
    stream = f"airflow/base/{item.task_arn.rsplit('/', 1)[-1]}"
    logs.create_log_group(logGroupName="/airflow/tasks")
    logs.create_log_stream(logGroupName="/airflow/tasks", logStreamName=stream)
    now_ms = int(executor_env.clock.now * 1000)
    logs.put_log_events(
        logGroupName="/airflow/tasks",
        logStreamName=stream,
        logEvents=[
            {"timestamp": now_ms, "message": "hello from the task"},
            {"timestamp": now_ms + 1, "message": "still here"},
        ],
    )
    # The API server's executor instance is fresh: it knows the task only by its external executor id.
    reader = executor_env.executor(start=False)
    messages, lines = reader.get_task_log(make_ti("logged", external_executor_id=launch.launch_id), 1)
    assert any("is RUNNING" in m for m in messages)
    assert any(stream in m for m in messages)
    # The container's output, then the control plane's record (JSON lines Airflow's reader shows with their time).
    assert lines[:2] == ["hello from the task", "still here"]
    assert "is RUNNING" in json.loads(lines[2])["event"]
    # Another try is not this launch's: nothing of it is shown as that try.
    assert reader.get_task_log(make_ti("logged", external_executor_id=launch.launch_id), 2)[1] == []


def test_safety_net_finds_a_change_the_feed_missed_one_slice_per_loop(executor_env: ExecutorEnv) -> None:
    from ecs_event_executor.control.tasks.item import EcsSnapshot

    # The feed never sees one change (emulated: the index does not return it; whatever the cause, the safety net
    # must find it).
    hidden: set[str] = set()

    def drop_hidden(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Items"] = [i for i in parsed.get("Items", []) if i["pk"]["S"] not in hidden]

    def hide_from_feed(service: str, client: Any) -> None:
        if service == "dynamodb":
            client.meta.events.register("after-call.dynamodb.Query", drop_hidden)

    executor_env.factory_hooks.append(hide_from_feed)
    executor = executor_env.executor()
    workloads = [task_workload(f"run-{i}") for i in range(250)]
    queue_all(executor, workloads)
    launches = {m.key.run_id: m for m in sent(executor_env) if isinstance(m, LaunchRequest)}
    table = executor_env.table()
    for launch in launches.values():
        table.create_for_launch(launch, lease_seconds=60)
    finished = launches["run-0"]
    hidden.add(finished.launch_id)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/airflow/0"
    table.apply_ecs_event(
        finished.launch_id,
        1,
        EcsSnapshot(TaskState.SUCCEEDED, arn, version=5, last_status="STOPPED", exit_code=0),
    )
    executor.get_event_buffer()
    executor_env.clock.advance(1)
    executor.sync()
    assert executor.get_event_buffer() == {}  # the feed missed it

    interval = executor.settings.reconcile_interval_seconds
    executor_env.clock.advance(interval)
    batch_reads, found = [], {}
    for _ in range(3):  # 250 tracked items: three slices of at most 100, one per due loop
        executor_env.counter.reset()
        executor.sync()
        batch_reads.append(executor_env.counter.calls.get(("dynamodb", "BatchGetItem"), 0))
        found.update(executor.get_event_buffer())
        executor_env.clock.advance(interval / 3 + 0.01)
    assert batch_reads == [1, 1, 1]
    assert found == {workloads[0].ti.key: ("success", None)}
