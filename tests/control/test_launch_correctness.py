"""Issue 14: one ECS task per queued try, started in time, with prompt and clear refusals (launcher side)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from ecs_event_executor.control.aws_errors import ErrorKind, classify
from ecs_event_executor.control.executor_config import ExecutorConfigError, check_executor_config
from ecs_event_executor.control.launching import (
    ECS_CLIENT_CONFIG,
    RECYCLE_AFTER_RECEIVES,
    Launcher,
    LauncherSettings,
    Result,
    RetryLater,
)
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from infra.launcher import LAUNCHER_TIMEOUT, MAX_RECEIVE_COUNT
from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import (
    CallCounter,
    ClientTokenSemantics,
    EcsLaunchRules,
    LambdaContextStub,
    body_event,
)
from tests.support.requests import launch_request

# The README's Fargate Spot example, word for word.
README_SPOT_CONFIG = {
    "overrides": {
        "containerOverrides": [
            {"name": "base", "memory": 4096, "environment": [{"name": "MODE", "value": "full"}]}
        ]
    },
    "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
}


def ecs_task_count(cp: ControlPlane) -> int:
    ecs = cp.client("ecs")
    return sum(
        len(ecs.list_tasks(cluster=cp.ecs.cluster, desiredStatus=status)["taskArns"])
        for status in ("RUNNING", "STOPPED")
    )


def stored(cp: ControlPlane, launch_id: str) -> TaskItem:
    found = TaskTable(cp.table).get(launch_id)
    assert found is not None
    return found


class Crash(RuntimeError):
    pass


def crash_after_run_task(launcher: Launcher) -> None:
    """Make the launcher's next record of a started task fail, as a Lambda killed right after RunTask."""
    original = launcher.table.record_launched
    state = {"crashed": False}

    def record(launch_id: str, attempt: int, **kwargs: Any) -> Any:
        if not state["crashed"]:
            state["crashed"] = True
            raise Crash("killed between RunTask and recording the task")
        return original(launch_id, attempt, **kwargs)

    launcher.table.record_launched = record  # type: ignore[method-assign]


def test_a_redelivery_after_a_redeploy_follows_the_task_the_token_started(
    control_plane: ControlPlane,
) -> None:
    """A deploy between the crash and the redelivery changed RUN_TASK_KWARGS: ECS answers ConflictException with
    the task already started; the attempt records that task instead of failing while it runs."""
    now = [time.time()]
    tokens = ClientTokenSemantics()
    first = Launcher(LauncherSettings.from_env(), clock=lambda: now[0])
    tokens.attach(first.ecs)
    crash_after_run_task(first)
    request = launch_request(deadline_in=3600)
    with pytest.raises(Crash):
        first.handle(request.to_json())
    task_arn = first.ecs.list_tasks(cluster=control_plane.ecs.cluster)["taskArns"][0]

    now[0] += LauncherSettings.from_env().lease_seconds + 1
    redeployed = LauncherSettings.from_env(dict(control_plane.env, RUN_TASK_KWARGS='{"group": "v2"}'))
    second = Launcher(
        redeployed, table=TaskTable(control_plane.table, clock=lambda: now[0]), clock=lambda: now[0]
    )
    tokens.attach(second.ecs)
    assert second.handle(request.to_json(), receive_count=2) is Result.LAUNCHED

    assert tokens.conflicts == 1
    item = stored(control_plane, request.launch_id)
    assert item.state is TaskState.PENDING and item.task_arn == task_arn
    assert ecs_task_count(control_plane) == 1


def test_a_redelivery_past_the_deadline_follows_the_task_an_earlier_delivery_started(
    control_plane: ControlPlane,
) -> None:
    """The existing-task check comes before the deadline check: the task started before the crash is recorded."""
    now = [time.time()]
    launcher = Launcher(
        LauncherSettings.from_env(),
        table=TaskTable(control_plane.table, clock=lambda: now[0]),
        clock=lambda: now[0],
    )
    crash_after_run_task(launcher)
    request = launch_request(deadline_in=30)
    with pytest.raises(Crash):
        launcher.handle(request.to_json())
    task_arn = launcher.ecs.list_tasks(cluster=control_plane.ecs.cluster)["taskArns"][0]

    now[0] += 120  # the message returns after its visibility timeout, past the deadline
    runs = CallCounter().attach(launcher.ecs)
    assert launcher.handle(request.to_json(), receive_count=2) is Result.LAUNCHED
    item = stored(control_plane, request.launch_id)
    assert item.state is TaskState.PENDING and item.task_arn == task_arn
    assert runs.calls["RunTask"] == 0 and ecs_task_count(control_plane) == 1


def test_a_launch_past_its_deadline_without_a_task_is_handed_back_not_failed(
    control_plane: ControlPlane,
) -> None:
    now = [time.time()]
    launcher = Launcher(
        LauncherSettings.from_env(),
        table=TaskTable(control_plane.table, clock=lambda: now[0]),
        clock=lambda: now[0],
    )
    request = launch_request(deadline_in=30)
    now[0] += 60
    assert launcher.handle(request.to_json()) is Result.EXPIRED
    item = stored(control_plane, request.launch_id)
    assert item.state is TaskState.EXPIRED
    assert "handed back to Airflow" in (item.reason or "")
    assert ecs_task_count(control_plane) == 0


def test_the_readme_fargate_spot_example_launches_on_the_default_settings(
    control_plane: ControlPlane,
) -> None:
    """The stack's default is LAUNCH_TYPE=FARGATE; the per-task strategy replaces it (ECS refuses both)."""
    launcher = launcher_handler.launcher()
    EcsLaunchRules().attach(launcher.ecs)
    sent: list[dict[str, Any]] = []
    launcher.ecs.meta.events.register(
        "before-call.ecs.RunTask", lambda params, **_: sent.append(json.loads(params["body"]))
    )
    check_executor_config(README_SPOT_CONFIG, container_name="base", command=["airflow"], max_attempts=3)
    request = launch_request(executor_config=README_SPOT_CONFIG)
    assert launcher.handle(request.to_json()) is Result.LAUNCHED
    assert stored(control_plane, request.launch_id).state is TaskState.PENDING
    assert "launchType" not in sent[0]
    assert sent[0]["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]


def test_a_per_task_launch_type_replaces_the_stacks_capacity_provider_strategy(
    control_plane: ControlPlane,
) -> None:
    env = dict(control_plane.env, CAPACITY_PROVIDER_STRATEGY='[{"capacityProvider": "FARGATE_SPOT"}]')
    del env["LAUNCH_TYPE"]
    launcher = Launcher(LauncherSettings.from_env(env))
    EcsLaunchRules().attach(launcher.ecs)
    request = launch_request(executor_config={"launchType": "FARGATE"})
    assert launcher.handle(request.to_json()) is Result.LAUNCHED


def test_a_nested_wrong_type_is_refused_at_queue_time_naming_the_field() -> None:
    config = {"overrides": {"ephemeralStorage": {"sizeInGiB": "30"}}}
    with pytest.raises(ExecutorConfigError) as refused:
        check_executor_config(config, container_name="base", command=["airflow"], max_attempts=3)
    assert refused.value.field_path == "overrides.ephemeralStorage.sizeInGiB"
    assert "executor_config.overrides.ephemeralStorage.sizeInGiB" in str(refused.value)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"tags": [{"key": f"k{i}", "value": "v"} for i in range(51)]}, "tags"),
        ({"tags": [{"key": "k" * 129, "value": "v"}]}, "tags[0].key"),
        ({"tags": [{"key": "team", "value": "v" * 257}]}, "tags[0].value"),
        ({"placementConstraints": [{"type": "sometimes"}]}, "placementConstraints[0].type"),
        (
            {"networkConfiguration": {"awsvpcConfiguration": {"securityGroups": ["sg-1"]}}},
            "networkConfiguration",
        ),
        ({"overrides": {"cpuu": "1024"}}, "overrides"),
    ],
)
def test_every_run_task_parameter_is_checked_against_the_ecs_model(
    config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ExecutorConfigError) as refused:
        check_executor_config(config, container_name="base", command=["airflow"], max_attempts=3)
    assert refused.value.field_path.startswith(field), refused.value


def test_botocore_parameter_validation_is_a_permanent_failure_naming_the_field() -> None:
    exc = ParamValidationError(
        report="Invalid type for parameter overrides.ephemeralStorage.sizeInGiB, value: 30, type: <class 'str'>"
    )
    assert classify(exc) is ErrorKind.PERMANENT


def test_a_parameter_botocore_refuses_fails_the_launch_with_the_field_path(
    control_plane: ControlPlane,
) -> None:
    """A parameter of the wrong type that reaches RunTask (RUN_TASK_KWARGS is checked when the environment is read;
    here it is forced past that check) fails at once, not at the deadline."""
    settings = LauncherSettings.from_env()
    wrong = {"overrides": {"ephemeralStorage": {"sizeInGiB": "30"}}}
    settings = dataclasses.replace(
        settings, launch=dataclasses.replace(settings.launch, run_task_kwargs=wrong)
    )
    request = launch_request()
    assert Launcher(settings).handle(request.to_json()) is Result.LAUNCH_FAILED
    assert "overrides.ephemeralStorage.sizeInGiB" in (stored(control_plane, request.launch_id).reason or "")


def test_the_ecs_client_uses_standard_retries_and_timeouts_inside_the_function_timeout() -> None:
    retries = ECS_CLIENT_CONFIG.retries or {}
    assert retries["mode"] == "standard"
    attempts = retries["total_max_attempts"]
    per_call = ECS_CLIENT_CONFIG.connect_timeout + ECS_CLIENT_CONFIG.read_timeout
    assert attempts * per_call < LAUNCHER_TIMEOUT.to_seconds() * 0.75


def test_launches_are_handed_back_unstarted_when_the_invocation_is_about_to_time_out(
    control_plane: ControlPlane,
) -> None:
    launcher = Launcher(LauncherSettings.from_env())
    runs = CallCounter().attach(launcher.ecs)
    requests = [launch_request(f"t{i}") for i in range(3)]
    outcomes = launcher.handle_many([(r.to_json(), 1) for r in requests], time_left=lambda: 10.0)
    assert all(isinstance(o, RetryLater) and o.delay_seconds == 1 for o in outcomes)
    assert runs.calls["RunTask"] == 0
    for r in requests:
        item = stored(control_plane, r.launch_id)
        assert item.state is TaskState.LAUNCHING and item.lease_until is None


def test_backoff_grows_with_the_messages_age_and_stops_at_the_deadline(control_plane: ControlPlane) -> None:
    now = [time.time()]
    launcher = Launcher(LauncherSettings.from_env(), clock=lambda: now[0])
    request = launch_request(deadline_in=3 * 3600)
    young = [launcher.backoff_seconds(60, request=request) for _ in range(50)]
    assert max(young) <= 2  # a fresh message is retried soon, whatever its receive count
    now[0] += 3600
    old = [launcher.backoff_seconds(1, request=request) for _ in range(50)]
    assert min(old) >= LauncherSettings.from_env().backoff_max_seconds // 2
    now[0] += 2 * 3600 - 10
    assert max(launcher.backoff_seconds(1, request=request) for _ in range(50)) <= 10


def test_a_message_retried_often_is_replaced_by_a_fresh_copy_before_the_redrive(
    control_plane: ControlPlane,
) -> None:
    """Throttled for hours: at RECYCLE_AFTER_RECEIVES receives the launcher sends a fresh copy and deletes the old."""
    assert RECYCLE_AFTER_RECEIVES < MAX_RECEIVE_COUNT
    launcher = launcher_handler.launcher()

    def throttled(**_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        error = {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), error

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", throttled)
    request = launch_request(deadline_in=3 * 3600)
    event = body_event([request.to_json()], control_plane.queue_arn, receive_count=RECYCLE_AFTER_RECEIVES)
    assert launcher_handler.handler(event, LambdaContextStub()) == {"batchItemFailures": []}
    sqs = control_plane.client("sqs")
    copy = sqs.receive_message(
        QueueUrl=control_plane.queue_url, AttributeNames=["All"], WaitTimeSeconds=0, VisibilityTimeout=0
    )
    # The copy is delayed by the backoff; it is on the queue (possibly not visible yet).
    attrs = sqs.get_queue_attributes(QueueUrl=control_plane.queue_url, AttributeNames=["All"])["Attributes"]
    on_queue = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesDelayed"])
    assert on_queue + len(copy.get("Messages", [])) >= 1
    assert stored(control_plane, request.launch_id).state is TaskState.LAUNCHING


def test_a_launch_request_deadline_is_never_reached_by_the_backoff(control_plane: ControlPlane) -> None:
    """An old message (its backoff at the cap) five seconds before its deadline comes back before the deadline."""
    now = [time.time()]
    launcher = Launcher(LauncherSettings.from_env(), clock=lambda: now[0])
    request = launch_request(deadline_in=3600)
    assert request.launch_deadline is not None
    now[0] = request.launch_deadline.timestamp() - 5
    delays = [launcher.backoff_seconds(30, request=request) for _ in range(20)]
    assert all(now[0] + d <= request.launch_deadline.timestamp() for d in delays), delays
