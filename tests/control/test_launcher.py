"""The launcher Lambda: exactly one ECS task per launch, retries for throttling and capacity, clear failures."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from ecs_event_executor.control.environment import EnvironmentVariableError
from ecs_event_executor.control.launching import Launcher, LauncherSettings, Result, RetryLater
from ecs_event_executor.control.messages import AdoptRequest, CancelRequest
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import CallCounter, ClientTokenSemantics, LambdaContextStub, body_event, sqs_event
from tests.support.requests import launch_request, workload_command


def invoke(cp: ControlPlane, bodies: list[str], receive_count: int = 1) -> dict[str, Any]:
    return launcher_handler.handler(body_event(bodies, cp.queue_arn, receive_count), LambdaContextStub())


def running_tasks(cp: ControlPlane) -> list[str]:
    return cp.client("ecs").list_tasks(cluster=cp.ecs.cluster)["taskArns"]


def item(cp: ControlPlane, launch_id: str) -> TaskItem:
    found = TaskTable(cp.table).get(launch_id)
    assert found is not None
    return found


def test_launch_starts_one_task_with_our_marks(control_plane: ControlPlane) -> None:
    request = launch_request(
        executor_config={
            "overrides": {
                "containerOverrides": [{"name": "base", "environment": [{"name": "X", "value": "1"}]}]
            }
        }
    )
    assert invoke(control_plane, [request.to_json()]) == {"batchItemFailures": []}
    stored = item(control_plane, request.launch_id)
    assert stored.state is TaskState.PENDING
    task = control_plane.client("ecs").describe_tasks(
        cluster=control_plane.ecs.cluster, tasks=[stored.task_arn]
    )["tasks"][0]
    assert task["startedBy"] == "airflow-ecs-event-executor"
    env = {kv["name"]: kv["value"] for kv in task["overrides"]["containerOverrides"][0]["environment"]}
    assert env["AIRFLOW_ECS_EVENT_LAUNCH_ID"] == request.launch_id
    assert env["AIRFLOW_ECS_EVENT_ATTEMPT"] == "1"
    assert env["X"] == "1"
    assert task["overrides"]["containerOverrides"][0]["command"] == request.command


def test_a_batch_is_launched_concurrently(control_plane: ControlPlane) -> None:
    """Ten launches of one batch call RunTask at the same time: each call waits for all ten to be in flight."""
    requests = [launch_request(f"t{i}") for i in range(10)]
    launcher = launcher_handler.launcher()
    all_in_flight = threading.Barrier(10, timeout=30)

    def wait_for_the_others(**_: Any) -> None:
        all_in_flight.wait()

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", wait_for_the_others)
    assert invoke(control_plane, [r.to_json() for r in requests]) == {"batchItemFailures": []}
    assert all(item(control_plane, r.launch_id).state is TaskState.PENDING for r in requests)
    assert len(running_tasks(control_plane)) == 10


def test_run_task_calls_are_paced_to_the_environment_rate(control_plane: ControlPlane) -> None:
    """With LAUNCHER_RUN_TASK_RATE=4, a batch of 10 waits for tokens: 4 at once, then one every 0.25 s."""
    slept: list[float] = []
    settings = LauncherSettings.from_env(
        dict(control_plane.env, LAUNCHER_RUN_TASK_RATE="4", LAUNCH_PARALLELISM="1")
    )
    launcher = Launcher(settings, clock=lambda: 1000.0, sleep=slept.append)
    outcomes = launcher.handle_many([(launch_request(f"t{i}").to_json(), 1) for i in range(10)])
    assert all(o is Result.LAUNCHED for o in outcomes)
    assert slept == pytest.approx([0.25 * k for k in range(1, 7)])


def test_a_launch_that_would_wait_too_long_for_a_token_comes_back_later(control_plane: ControlPlane) -> None:
    """At 0.01 RunTask calls/s the second launch would wait 100 s: it is put back, its lease released."""
    settings = LauncherSettings.from_env(
        dict(control_plane.env, LAUNCHER_RUN_TASK_RATE="0.01", LAUNCH_PARALLELISM="1")
    )
    slept: list[float] = []
    launcher = Launcher(settings, clock=lambda: 1000.0, sleep=slept.append)
    first, second = launch_request("first"), launch_request("second")
    outcomes = launcher.handle_many([(first.to_json(), 1), (second.to_json(), 1)])
    assert outcomes[0] is Result.LAUNCHED
    assert isinstance(outcomes[1], RetryLater) and "paced" in outcomes[1].reason
    assert slept == []
    waiting = item(control_plane, second.launch_id)
    assert waiting.state is TaskState.LAUNCHING and waiting.lease_until is None
    assert "RunTask paced at 0.01/s" in (waiting.reason or "")


def test_redelivered_message_starts_exactly_one_task(control_plane: ControlPlane) -> None:
    """One message delivered 3 times, then again after a crash between RunTask and the SQS delete."""
    sqs = control_plane.client("sqs")
    request = launch_request()
    sqs.send_message(QueueUrl=control_plane.queue_url, MessageBody=request.to_json())
    launcher = launcher_handler.launcher()
    runs = CallCounter().attach(launcher.ecs)
    ClientTokenSemantics().attach(launcher.ecs)
    for _ in range(3):
        received = sqs.receive_message(
            QueueUrl=control_plane.queue_url, VisibilityTimeout=0, AttributeNames=["All"]
        )["Messages"]
        assert launcher_handler.handler(
            sqs_event(received, control_plane.queue_arn), LambdaContextStub()
        ) == {"batchItemFailures": []}
    # The Lambda "crashed" before SQS deleted the message: it comes back once more.
    received = sqs.receive_message(QueueUrl=control_plane.queue_url, AttributeNames=["All"])["Messages"]
    assert received[0]["Attributes"]["ApproximateReceiveCount"] == "4"
    launcher_handler.handler(sqs_event(received, control_plane.queue_arn), LambdaContextStub())
    assert len(running_tasks(control_plane)) == 1
    assert runs.calls["RunTask"] == 1


def test_crash_between_run_task_and_record_reuses_the_client_token(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher dies after RunTask and before recording the task; the redelivery gets the same task back."""
    now = [1_800_000_000.0]
    settings = LauncherSettings.from_env()
    table = TaskTable(control_plane.table, clock=lambda: now[0])
    launcher = Launcher(settings, table=table, clock=lambda: now[0])
    runs = CallCounter().attach(launcher.ecs)
    tokens = ClientTokenSemantics().attach(launcher.ecs)
    request = launch_request(deadline_in=None)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Lambda timed out")

    with monkeypatch.context() as m:
        m.setattr(table, "record_launched", crash)
        with pytest.raises(RuntimeError):
            launcher.handle(request.to_json())
    # While the first invocation's lease is live, a duplicate is told to come back later and calls nothing.
    with pytest.raises(RetryLater):
        launcher.handle(request.to_json(), receive_count=2)
    now[0] += settings.lease_seconds + 1
    launcher.handle(request.to_json(), receive_count=3)
    assert runs.calls["RunTask"] == 2
    assert tokens.replayed == 1
    assert len(running_tasks(control_plane)) == 1
    assert item(control_plane, request.launch_id).state is TaskState.PENDING


def _inject(client: Any, operation: str, responses: list[tuple[int, dict[str, Any]]]) -> None:
    """Answer the next calls of ``operation`` with the given (status, parsed body) instead of moto."""
    from botocore.awsrequest import AWSResponse

    def before(**_: Any) -> Any:
        if responses:
            status, parsed = responses.pop(0)
            return AWSResponse("https://ecs.amazonaws.com/", status, {}, None), parsed
        return None

    client.meta.events.register(f"before-call.ecs.{operation}", before)


THROTTLED = (
    400,
    {
        "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    },
)
NO_CAPACITY = (
    200,
    {
        "tasks": [],
        "failures": [
            {
                "reason": "Capacity is unavailable at this time. Please try again later or in a different availability zone"
            }
        ],
    },
)


@pytest.mark.parametrize("failure", [THROTTLED, NO_CAPACITY], ids=["throttled", "capacity"])
def test_throttling_and_capacity_are_retried_until_launched(
    control_plane: ControlPlane, failure: tuple[int, dict[str, Any]]
) -> None:
    sqs = control_plane.client("sqs")
    request = launch_request()
    sqs.send_message(QueueUrl=control_plane.queue_url, MessageBody=request.to_json())
    launcher = launcher_handler.launcher()
    _inject(launcher.ecs, "RunTask", [failure, failure])
    visibility: list[int] = []
    launcher_handler.sqs().meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: visibility.append(params["VisibilityTimeout"]),
    )
    for attempt in range(3):
        received = sqs.receive_message(
            QueueUrl=control_plane.queue_url, VisibilityTimeout=0, AttributeNames=["All"]
        )["Messages"]
        result = launcher_handler.handler(sqs_event(received, control_plane.queue_arn), LambdaContextStub())
        expected = [{"itemIdentifier": received[0]["MessageId"]}] if attempt < 2 else []
        assert result == {"batchItemFailures": expected}
        if attempt < 2:
            # The launcher asked SQS to hide the message for the backoff; let that time pass.
            sqs.change_message_visibility(
                QueueUrl=control_plane.queue_url,
                ReceiptHandle=received[0]["ReceiptHandle"],
                VisibilityTimeout=0,
            )
            assert item(control_plane, request.launch_id).state is TaskState.LAUNCHING
            assert "retrying" in (item(control_plane, request.launch_id).reason or "")
    assert len(visibility) == 2 and all(v >= 1 for v in visibility)
    assert item(control_plane, request.launch_id).state is TaskState.PENDING
    assert len(running_tasks(control_plane)) == 1


def test_permanent_error_fails_with_the_aws_message(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASK_DEFINITION", "does-not-exist:1")
    launcher_handler.reset()
    request = launch_request()
    assert invoke(control_plane, [request.to_json()]) == {"batchItemFailures": []}
    stored = item(control_plane, request.launch_id)
    assert stored.state is TaskState.FAILED
    assert (
        stored.reason == "ECS RunTask refused the task: ClientException: Unable to describe task definition."
    )


def test_access_denied_fails_at_once(control_plane: ControlPlane) -> None:
    launcher = launcher_handler.launcher()
    denied = (
        400,
        {
            "Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecs:RunTask"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
    )
    _inject(launcher.ecs, "RunTask", [denied])
    request = launch_request()
    assert invoke(control_plane, [request.to_json()]) == {"batchItemFailures": []}
    assert "AccessDeniedException: not authorized" in (item(control_plane, request.launch_id).reason or "")


def test_malformed_body_is_a_batch_item_failure_without_a_dlq(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    good = launch_request()
    event = body_event(["{not json", good.to_json()], control_plane.queue_arn)
    result = launcher_handler.handler(event, LambdaContextStub())
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert item(control_plane, good.launch_id).state is TaskState.PENDING


def test_malformed_body_goes_to_the_dlq_with_its_reason(control_plane: ControlPlane) -> None:
    bad = json.dumps({"schema": 1, "kind": "launch", "launch_id": "abcdefgh-1-00"})
    assert invoke(control_plane, [bad]) == {"batchItemFailures": []}
    sqs = control_plane.client("sqs")
    dead = sqs.receive_message(QueueUrl=control_plane.dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert dead[0]["Body"] == bad
    reason = dead[0]["MessageAttributes"]["FailureReason"]["StringValue"]
    assert "owner" in reason and "Field required" in reason


def test_past_deadline_is_not_launched(control_plane: ControlPlane) -> None:
    request = launch_request(deadline_in=-1)
    invoke(control_plane, [request.to_json()])
    stored = item(control_plane, request.launch_id)
    assert stored.state is TaskState.EXPIRED
    assert "launch deadline" in (stored.reason or "")
    assert running_tasks(control_plane) == []


def test_overrides_over_the_ecs_limit_fail_naming_it(control_plane: ControlPlane) -> None:
    request = launch_request()
    request = request.model_copy(update={"command": workload_command(request.key, hostname="x" * 9000)})
    invoke(control_plane, [request.to_json()])
    stored = item(control_plane, request.launch_id)
    assert stored.state is TaskState.FAILED
    assert "8192" in (stored.reason or "")
    assert running_tasks(control_plane) == []


def test_cancel_before_launch_wins_over_a_later_launch(control_plane: ControlPlane) -> None:
    request = launch_request()
    cancel = CancelRequest(launch_id=request.launch_id, owner=request.owner)
    invoke(control_plane, [cancel.to_json()])
    invoke(control_plane, [request.to_json()])
    assert item(control_plane, request.launch_id).state is TaskState.CANCELLED
    assert running_tasks(control_plane) == []


def test_cancel_after_launch_stops_the_task(control_plane: ControlPlane) -> None:
    request = launch_request()
    invoke(control_plane, [request.to_json()])
    invoke(
        control_plane,
        [
            CancelRequest(
                launch_id=request.launch_id, owner=request.owner, reason="revoked: stuck in queued"
            ).to_json()
        ],
    )
    stored = item(control_plane, request.launch_id)
    assert stored.cancel_requested
    task = control_plane.client("ecs").describe_tasks(
        cluster=control_plane.ecs.cluster, tasks=[stored.task_arn]
    )["tasks"][0]
    assert task["desiredStatus"] == "STOPPED"
    assert task["stoppedReason"] == "revoked: stuck in queued"


def test_adopt_moves_the_item_to_the_new_owner(control_plane: ControlPlane) -> None:
    request = launch_request(owner="default:1")
    invoke(control_plane, [request.to_json()])
    before = item(control_plane, request.launch_id)
    invoke(control_plane, [AdoptRequest(launch_id=request.launch_id, owner="default:2").to_json()])
    table = TaskTable(control_plane.table)
    feed = [i.launch_id for page in table.changes_since("default:2", 0) for i in page]
    assert feed == [request.launch_id]
    assert item(control_plane, request.launch_id).rev > before.rev


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("CLUSTER", "", "CLUSTER is required"),
        ("TASKS_TABLE_NAME", "", "TASKS_TABLE_NAME is required"),
        ("RUN_TASK_KWARGS", "{bad", "RUN_TASK_KWARGS is not valid JSON"),
        ("RUN_TASK_KWARGS", '{"count": 2}', "RUN_TASK_KWARGS is invalid"),
        ("CAPACITY_PROVIDER_STRATEGY", '[{"capacityProvider": "FARGATE_SPOT"}]', "mutually exclusive"),
        ("ASSIGN_PUBLIC_IP", "maybe", "ASSIGN_PUBLIC_IP"),
        ("LAUNCHER_RUN_TASK_RATE", "fast", "LAUNCHER_RUN_TASK_RATE must be a number"),
        ("LAUNCHER_RUN_TASK_RATE", "0", "LAUNCHER_RUN_TASK_RATE must be positive"),
        ("LAUNCH_PARALLELISM", "0", "LAUNCH_PARALLELISM must be positive"),
    ],
)
def test_launch_settings_are_validated_naming_the_variable(
    control_plane: ControlPlane, name: str, value: str, needle: str
) -> None:
    env = dict(control_plane.env, **{name: value})
    with pytest.raises(EnvironmentVariableError, match=needle):
        LauncherSettings.from_env(env)
