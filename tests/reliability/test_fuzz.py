"""R6: fuzzed launch messages, executor_config and ECS events: never a crash, always a clear error, nothing lost."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from ecs_event_executor.control.ecs_state import TaskStateChange, map_event
from ecs_event_executor.control.executor_config import ExecutorConfigError, validate_executor_config
from ecs_event_executor.control.messages import MalformedMessage, parse_message
from ecs_event_executor.control.run_task import LaunchConfig, build_run_task_kwargs
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import LambdaContextStub, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import deliver
from tests.support.requests import launch_request

pytestmark = pytest.mark.reliability

CASES = {"messages": 4000, "executor_config": 3000, "events": 3000}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
VALID = json.loads(launch_request().to_json())
FIELDS = [*VALID, "schema", "kind", "unknown"]


@st.composite
def mutated_messages(draw: st.DrawFn) -> str:
    """A valid launch message with fields removed, replaced or added; or arbitrary JSON; or arbitrary text."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.text(max_size=200))
    if choice == 1:
        return json.dumps(draw(json_values))
    message = dict(VALID)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            message.pop(name, None)
        else:
            message[name] = draw(json_values)
    return json.dumps(message)


CONFIG_KEYS = [
    "overrides",
    "tags",
    "launchType",
    "capacityProviderStrategy",
    "cluster",
    "group",
    "command",
    "name",
    "count",
    "networkConfiguration",
]
CONTAINER_KEYS = ["name", "command", "environment", "cpu", "memory", "bogus"]


@st.composite
def executor_configs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values)
    config: dict[str, Any] = {
        k: draw(json_values) for k in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=3))
    }
    if draw(st.booleans()):
        containers = []
        for _ in range(draw(st.integers(0, 2))):
            container: dict[str, Any] = {
                k: draw(json_values) for k in draw(st.lists(st.sampled_from(CONTAINER_KEYS), max_size=3))
            }
            container.setdefault("name", draw(st.sampled_from(["base", "sidecar"])))
            if draw(st.booleans()):
                container["environment"] = [
                    {"name": draw(st.text(max_size=10)), "value": draw(st.text(max_size=3000))}
                ]
            containers.append(container)
        config["overrides"] = {"containerOverrides": containers}
    return config


TASK = {
    "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/airflow/0123456789abcdef",
    "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/airflow",
    "startedBy": "airflow-ecs-event-executor",
    "overrides": {
        "containerOverrides": [
            {"name": "base", "environment": [{"name": "AIRFLOW_ECS_EVENT_LAUNCH_ID", "value": "x" * 16}]}
        ]
    },
}
DETAIL_KEYS = [
    "lastStatus",
    "desiredStatus",
    "stopCode",
    "stoppedReason",
    "containers",
    "startedAt",
    "version",
    "overrides",
    "taskArn",
    "startedBy",
]


@st.composite
def ecs_events(draw: st.DrawFn) -> Any:
    base = task_event(
        TASK,
        last_status=draw(
            st.sampled_from(
                ["PROVISIONING", "PENDING", "RUNNING", "STOPPING", "DEPROVISIONING", "STOPPED", "WEIRD"]
            )
        ),
        version=draw(st.integers(-5, 10**6)),
        exit_code=draw(st.none() | st.integers(-(2**31), 2**31)),
        stop_code=draw(
            st.none()
            | st.sampled_from(
                [
                    "TaskFailedToStart",
                    "UserInitiated",
                    "SpotInterruption",
                    "EssentialContainerExited",
                    "Other",
                ]
            )
        ),
        started=draw(st.booleans()),
    )
    for key in draw(st.lists(st.sampled_from(DETAIL_KEYS), max_size=3)):
        if draw(st.booleans()):
            base["detail"].pop(key, None)
        else:
            base["detail"][key] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    return base


LAUNCH = LaunchConfig(
    cluster="airflow",
    task_definition="airflow-worker:1",
    container_name="base",
    launch_type="FARGATE",
    subnets=("s",),
    security_groups=("g",),
)


def test_fuzzed_inputs_never_crash_and_always_say_why(figure: Callable[[str], None]) -> None:
    """Three properties, run here so one test can report (and check) how many cases they tried."""
    counts: dict[str, int] = dict.fromkeys(CASES, 0)
    quiet = {"deadline": None, "suppress_health_check": list(HealthCheck)}

    @settings(max_examples=CASES["messages"], **quiet)  # type: ignore[arg-type]
    @given(mutated_messages())
    def launch_messages_parse_or_fail_with_a_reason(body: str) -> None:
        counts["messages"] += 1
        try:
            message = parse_message(body)
        except MalformedMessage as exc:
            assert str(exc), "a malformed message must say why"
            return
        assert message.kind in ("launch", "relaunch", "cancel", "adopt", "ping")

    @settings(max_examples=CASES["executor_config"], **quiet)  # type: ignore[arg-type]
    @given(executor_configs())
    def executor_config_is_valid_or_names_the_field(config: Any) -> None:
        counts["executor_config"] += 1
        try:
            validate_executor_config(config, container_name="base")
            kwargs = build_run_task_kwargs(
                LAUNCH, launch_id="abcdefgh-1-00", attempt=1, command=["true"], executor_config=config
            )
        except ExecutorConfigError as exc:
            assert str(exc).startswith("executor_config")
            return
        ours = [c for c in kwargs["overrides"]["containerOverrides"] if c["name"] == "base"]
        assert len(ours) == 1 and ours[0]["command"] == ["true"]
        assert kwargs["startedBy"] == "airflow-ecs-event-executor" and kwargs["count"] == 1

    @settings(max_examples=CASES["events"], **quiet)  # type: ignore[arg-type]
    @given(ecs_events())
    def events_parse_and_map_or_are_refused(event: Any) -> None:
        counts["events"] += 1
        try:
            change = TaskStateChange.model_validate(event)
        except ValueError:
            return
        assert map_event(change.detail, "base").state in set(TaskState)

    launch_messages_parse_or_fail_with_a_reason()
    executor_config_is_valid_or_names_the_field()
    events_parse_and_map_or_are_refused()
    total = sum(counts.values())
    figure(f"R6 fuzzed cases without a crash: {total} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    assert total >= 10_000


def test_poison_messages_reach_the_dlq_with_their_reason_and_nothing_is_lost(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    rng = random.Random(6)
    poison = [mutated_messages().example() for _ in range(150)]
    poison = [p for p in poison if not _parses(p)]
    good = [launch_request(f"good{i}") for i in range(50)]
    bodies = poison + [g.to_json() for g in good]
    rng.shuffle(bodies)
    failures = 0
    for start in range(0, len(bodies), 10):
        failures += len(
            launcher_handler.handler(
                body_event(bodies[start : start + 10], control_plane.queue_arn), LambdaContextStub()
            )["batchItemFailures"]
        )
    sqs = control_plane.client("sqs")
    dead: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=control_plane.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            break
        dead.extend(got)
        sqs.delete_message_batch(
            QueueUrl=control_plane.dlq_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )
    launched = TaskTable(control_plane.table).get_many(g.launch_id for g in good)
    with_reason = [m for m in dead if m["MessageAttributes"]["FailureReason"]["StringValue"]]
    figure(
        f"R6 poison messages in the DLQ with a reason: {len(with_reason)} of {len(poison)}; valid launches among them started: {len(launched)} of {len(good)}"
    )
    assert failures == 0
    assert sorted(m["Body"] for m in with_reason) == sorted(poison)
    assert all(item.state is TaskState.PENDING for item in launched.values()) and len(launched) == len(good)
    # And the status handler never raises on a fuzzed event.
    for _ in range(200):
        event = ecs_events().example()  # a sample outside @given: 200 real handler calls under moto
        assert deliver([event]) == []


def _parses(body: str) -> bool:
    try:
        parse_message(body)
    except MalformedMessage:
        return False
    return True
