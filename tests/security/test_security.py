"""The security suite (``pytest -m security``): who can start a container, and teams cannot touch each other's tasks.

Each test drives the real handlers against moto (or reads the synthesized template) and prints one figure:

- S1 forged launches: commands that are not the Airflow workload of the message's own task instance are refused,
  nothing runs, the reason is on the item and in the DLQ.
- S2 forged relaunches through the project bus: not forwarded by the relaunch rule, or refused by the launcher.
- S3 cross-team cancel, adopt and request overwrite: refused.
- S4 a sidecar's environment binding a task's events to another launch: refused at queue time, ignored by the
  status path and by the launcher's look for a late launch's task; an event of another task never replaces an
  item's task.
- S5 the template: the queue and bus policies, the relaunch rule's pattern, the KMS option.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from ecs_event_executor.control import bus
from ecs_event_executor.control.executor_config import ExecutorConfigError, check_executor_config
from ecs_event_executor.control.messages import AdoptRequest, CancelRequest, LaunchRequest, RelaunchRequest
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.control.workload_guard import WORKLOAD_PREFIX

from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import REGION, CallCounter, LambdaContextStub, apply_input_path_detail, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import send
from tests.support.policy import denied
from tests.support.requests import launch_request, workload_command

pytestmark = pytest.mark.security

MODULE = WORKLOAD_PREFIX[2]


def invoke(cp: ControlPlane, bodies: list[str]) -> dict[str, Any]:
    return launcher_handler.handler(body_event(bodies, cp.queue_arn), LambdaContextStub())


def item(cp: ControlPlane, launch_id: str) -> TaskItem | None:
    return TaskTable(cp.table).get(launch_id)


def tasks_started(cp: ControlPlane) -> int:
    return len(cp.client("ecs").list_tasks(cluster=cp.ecs.cluster)["taskArns"])


def dead_letters(cp: ControlPlane) -> list[dict[str, Any]]:
    """Drain the launch DLQ; return its messages with their attributes."""
    sqs = cp.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=cp.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return found
        found += batch
        for m in batch:
            sqs.delete_message(QueueUrl=cp.dlq_url, ReceiptHandle=m["ReceiptHandle"])


def launched(cp: ControlPlane, request: LaunchRequest) -> dict[str, Any]:
    """Launch ``request`` through the launcher; return its ECS task."""
    assert invoke(cp, [request.to_json()]) == {"batchItemFailures": []}
    stored = item(cp, request.launch_id)
    assert stored is not None and stored.task_arn, stored
    return cp.client("ecs").describe_tasks(cluster=cp.ecs.cluster, tasks=[stored.task_arn])["tasks"][0]


# ---------------------------------------------------------------------------------------------------------- S1


def _forged_commands(request: LaunchRequest) -> dict[str, list[str]]:
    """Return at least 20 command shapes that must not run, by name, for ``request``'s key."""
    key = request.key
    good = workload_command(key)
    workload = json.loads(good[-1])

    def with_workload(**changes: Any) -> list[str]:
        return [*WORKLOAD_PREFIX, json.dumps({**workload, **changes})]

    def with_ti(**changes: Any) -> list[str]:
        return with_workload(ti={**workload["ti"], **changes})

    return {
        "sh -c": ["sh", "-c", "id; env"],
        "bash -c": ["bash", "-c", "curl -s http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
        "/bin/sh -c": ["/bin/sh", "-c", "id"],
        "python -c": ["python", "-c", "import os; os.system('id')"],
        "another module": ["python", "-m", "http.server", "8080"],
        "pip install": ["python", "-m", "pip", "install", "evil"],
        "airflow tasks run (2.11, unsupported)": [
            "airflow",
            "tasks",
            "run",
            key.dag_id,
            key.task_id,
            key.run_id,
        ],
        "airflow standalone": ["airflow", "standalone"],
        "--json-path": ["python", "-m", MODULE, "--json-path", "/etc/passwd"],
        "--json-string=": ["python", "-m", MODULE, f"--json-string={good[-1]}"],
        "extra argument": [*good, "--debug"],
        "python3": ["python3", *good[1:]],
        "absolute python": ["/usr/bin/python", *good[1:]],
        "env prefix": ["env", "X=1", *good],
        "padded python": [" python", *good[1:]],
        "lookalike module": ["python", "-m", MODULE + "_evil", *good[3:]],
        "not JSON": [*WORKLOAD_PREFIX, "id; env"],
        "JSON list": [*WORKLOAD_PREFIX, "[1, 2]"],
        "RunTrigger workload": with_workload(type="RunTrigger", classpath="os.system"),
        "TestConnection workload": with_workload(type="TestConnection"),
        "no task instance": with_workload(ti=None),
        "another dag": with_ti(dag_id="payroll"),
        "another task": with_ti(task_id="transfer_funds"),
        "another run": with_ti(run_id="scheduled__2026-01-01"),
        "another try": with_ti(try_number=key.try_number + 1),
        "another map index": with_ti(map_index=7),
        "try number as true": with_ti(try_number=True),
        "callback for a task key": with_workload(
            type="ExecuteCallback", callback={"id": key.task_id, "fetch_method": "import_path", "data": {}}
        ),
    }


def test_s1_forged_launches_are_refused_and_nothing_runs(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    cp = control_plane
    runs = CallCounter().attach(launcher_handler.launcher().ecs)
    base = launch_request()
    forged = _forged_commands(base)
    assert len(forged) >= 20
    on_item = 0
    for i, (name, command) in enumerate(forged.items()):
        request = launch_request(f"forged{i}")
        request = request.model_copy(update={"command": _rekey(command, base, request)})
        assert invoke(cp, [request.to_json()]) == {"batchItemFailures": []}, name
        stored = item(cp, request.launch_id)
        if (
            stored is not None
            and stored.state is TaskState.FAILED
            and (stored.reason or "").startswith("refused")
        ):
            on_item += 1
    letters = dead_letters(cp)
    reasons = [m["MessageAttributes"]["FailureReason"]["StringValue"] for m in letters]
    with_reason = sum(r.startswith("refused: command") for r in reasons)
    # Nothing was started, and RunTask was not even called; the control: a genuine workload still runs.
    assert runs.calls["RunTask"] == 0 and tasks_started(cp) == 0
    assert on_item == len(forged) and with_reason == len(forged), reasons
    launched(cp, launch_request("genuine"))
    assert tasks_started(cp) == 1
    figure(
        f"S1 forged launches refused: {with_reason} of {len(forged)} command shapes (reason in the DLQ "
        f"{with_reason}, on the item {on_item}); ECS tasks started 0, RunTask calls 0; a genuine workload ran: 1 of 1"
    )


def _rekey(command: list[str], base: LaunchRequest, request: LaunchRequest) -> list[str]:
    """Return ``command`` with ``base``'s task id replaced by ``request``'s (each forged message has its own key)."""
    return [part.replace(f'"{base.key.task_id}"', f'"{request.key.task_id}"') for part in command]


def test_s1_a_forged_launch_reusing_a_victims_launch_id_leaves_the_victim_alone(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    victim = launch_request("victim")
    launched(cp, victim)
    before = item(cp, victim.launch_id)
    forged = victim.model_copy(update={"command": ["sh", "-c", "id"]})
    assert invoke(cp, [forged.to_json()]) == {"batchItemFailures": []}
    assert item(cp, victim.launch_id) == before
    assert TaskTable(cp.table).read_request(victim.launch_id) == victim


# ---------------------------------------------------------------------------------------------------------- S2


@pytest.fixture
def relaunch_route(control_plane: ControlPlane) -> Iterator[tuple[Any, str, str]]:
    """The project bus with the stack's relaunch rule (its pattern from the contract) targeting a queue."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name="airflow-ecs-events")
    url = sqs.create_queue(QueueName="relaunch-target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="relaunch",
        EventBusName="airflow-ecs-events",
        EventPattern=json.dumps(bus.RELAUNCH_EVENT_PATTERN),
    )
    events.put_targets(
        Rule="relaunch",
        EventBusName="airflow-ecs-events",
        Targets=[{"Id": "q", "Arn": arn, "InputPath": "$.detail"}],
    )
    yield events, url, "airflow-ecs-events"


def _forwarded(sqs: Any, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    for m in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return [apply_input_path_detail(m["Body"]) for m in messages]


def test_s2_forged_relaunches_through_the_bus_are_refused(
    control_plane: ControlPlane, relaunch_route: tuple[Any, str, str], figure: Callable[[str], None]
) -> None:
    cp = control_plane
    events, url, bus_name = relaunch_route
    sqs = cp.client("sqs")
    launch = launch_request("evil").model_copy(update={"command": ["sh", "-c", "id; env"]})
    genuine_launch = launch_request("genuine")
    forged_details = {
        "a launch message as detail": json.loads(launch.to_json()),
        "a genuine workload's launch as detail": json.loads(genuine_launch.to_json()),
        "a relaunch carrying a command": {
            **RelaunchRequest(launch_id=launch.launch_id, attempt=1).model_dump(by_alias=True, mode="json"),
            "command": ["sh", "-c", "id"],
        },
        "a relaunch of a launch that never was": RelaunchRequest(
            launch_id=launch.launch_id, attempt=1
        ).model_dump(by_alias=True, mode="json"),
    }
    not_matched = refused = 0
    for detail in forged_details.values():
        events.put_events(
            Entries=[
                {
                    "Source": bus.SOURCE,
                    "DetailType": bus.RELAUNCH_REQUESTED,
                    "Detail": json.dumps(detail),
                    "EventBusName": bus_name,
                }
            ]
        )
        bodies = _forwarded(sqs, url)
        if not bodies:
            not_matched += 1
            continue
        assert invoke(cp, bodies) == {"batchItemFailures": []}
        stored = item(cp, launch.launch_id)
        if tasks_started(cp) == 0 and (stored is None or stored.task_arn is None):
            refused += 1
    assert not_matched == 2  # the launch messages: the rule forwards only kind=relaunch
    assert not_matched + refused == len(forged_details) and tasks_started(cp) == 0
    # The control: a genuine relaunch request is forwarded.
    genuine = RelaunchRequest(launch_id=genuine_launch.launch_id, attempt=1)
    events.put_events(
        Entries=[
            {
                "Source": bus.SOURCE,
                "DetailType": bus.RELAUNCH_REQUESTED,
                "Detail": json.dumps(genuine.model_dump(by_alias=True, mode="json")),
                "EventBusName": bus_name,
            }
        ]
    )
    assert [json.loads(b)["kind"] for b in _forwarded(sqs, url)] == ["relaunch"]
    figure(
        f"S2 forged relaunches through the bus refused: {not_matched + refused} of {len(forged_details)} "
        f"({not_matched} not forwarded by the rule, {refused} refused by the launcher); ECS tasks started 0; "
        "publishers outside the control plane denied by the bus policy (S5)"
    )


# ---------------------------------------------------------------------------------------------------------- S3


def test_s3_teams_cannot_cancel_adopt_or_overwrite_each_others_launches(
    control_plane: ControlPlane, figure: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = control_plane
    ecs = cp.client("ecs")
    a_running = launch_request("a1", owner="team-a:1", team="team-a")
    task = launched(cp, a_running)
    a_queued = launch_request("a2", owner="team-a:1", team="team-a")
    attempts: dict[str, bool] = {}

    # Team B cancels A's running task: not stopped, not marked.
    invoke(cp, [CancelRequest(launch_id=a_running.launch_id, owner="team-b:9", team="team-b").to_json()])
    after = item(cp, a_running.launch_id)
    stopped = ecs.describe_tasks(cluster=cp.ecs.cluster, tasks=[task["taskArn"]])["tasks"][0]["lastStatus"]
    attempts["cancel of a running task"] = (
        after is not None
        and not after.cancel_requested
        and after.state is TaskState.PENDING
        and stopped != "STOPPED"
    )

    # Team B cancels A's launch before it was launched (the item exists, LAUNCHING after a retry): unchanged.
    TaskTable(cp.table).create_for_launch(a_queued, lease_seconds=0)
    invoke(cp, [CancelRequest(launch_id=a_queued.launch_id, owner="team-b:9", team="team-b").to_json()])
    queued = item(cp, a_queued.launch_id)
    attempts["cancel before RunTask"] = queued is not None and queued.state is TaskState.LAUNCHING

    # Team B adopts A's task: it stays in A's change feed.
    invoke(cp, [AdoptRequest(launch_id=a_running.launch_id, owner="team-b:9", team="team-b").to_json()])
    adopted = item(cp, a_running.launch_id)
    attempts["adopt"] = adopted is not None and adopted.owner == "team-a:1"

    # Team B launches under A's launch id: A's stored request (what relaunches read) is unchanged.
    overwrite = launch_request("a1", owner="team-b:9", team="team-b").model_copy(
        update={"launch_id": a_running.launch_id, "key": a_running.key}
    )
    invoke(cp, [overwrite.to_json()])
    attempts["request overwrite"] = TaskTable(cp.table).read_request(a_running.launch_id) == a_running

    # A stack serving one team (TEAM) refuses the other team's messages outright.
    monkeypatch.setenv("TEAM", "team-a")
    launcher_handler.reset()
    other = launch_request("b1", owner="team-b:9", team="team-b")
    invoke(cp, [other.to_json()])
    attempts["another team's launch on a one-team stack"] = item(cp, other.launch_id) is None

    letters = dead_letters(cp)
    reasons = [m["MessageAttributes"]["FailureReason"]["StringValue"] for m in letters]
    assert attempts == dict.fromkeys(attempts, True), attempts
    assert any("already used by another launch request" in r for r in reasons), reasons
    assert any("serves team 'team-a'" in r for r in reasons), reasons
    assert tasks_started(cp) == 1

    # The control: the owning team cancels and adopts.
    invoke(cp, [AdoptRequest(launch_id=a_running.launch_id, owner="team-a:2", team="team-a").to_json()])
    invoke(cp, [CancelRequest(launch_id=a_running.launch_id, owner="team-a:2", team="team-a").to_json()])
    mine = item(cp, a_running.launch_id)
    assert mine is not None and mine.owner == "team-a:2" and mine.cancel_requested
    figure(
        f"S3 cross-team writes refused: {sum(attempts.values())} of {len(attempts)} "
        f"({', '.join(attempts)}); the owning team's cancel and adopt applied: 2 of 2"
    )


# ---------------------------------------------------------------------------------------------------------- S4


def test_s4_a_sidecar_cannot_bind_events_to_another_launch(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    cp = control_plane
    refused: dict[str, bool] = {}
    victim = launch_request("victim")
    victim_task = launched(cp, victim)
    marks = [{"name": "AIRFLOW_ECS_EVENT_LAUNCH_ID", "value": victim.launch_id}]
    sidecar_config = {"overrides": {"containerOverrides": [{"name": "sidecar", "environment": marks}]}}

    # At queue time (the executor) and at launch (the launcher): the reserved names are refused in any container.
    try:
        check_executor_config(sidecar_config, container_name="base", command=victim.command, max_attempts=3)
        refused["executor_config at queue time"] = False
    except ExecutorConfigError as exc:
        refused["executor_config at queue time"] = "AIRFLOW_ECS_EVENT_" in str(exc)
    attacker = launch_request("attacker", executor_config=sidecar_config)
    invoke(cp, [attacker.to_json()])
    stored = item(cp, attacker.launch_id)
    refused["executor_config at launch"] = (
        stored is not None
        and stored.state is TaskState.FAILED
        and "AIRFLOW_ECS_EVENT_" in (stored.reason or "")
    )

    # The status path binds through the Airflow container only: a task whose sidecar override carries the
    # victim's marks (as if they had got through) fails its own item, not the victim's.
    own = launch_request("own")
    own_task = launched(cp, own)
    forged_task = json.loads(json.dumps(own_task, default=str))
    forged_task["overrides"]["containerOverrides"].append({"name": "sidecar", "environment": marks})
    send(task_event(forged_task, last_status="STOPPED", version=5, exit_code=1))
    victim_after = item(cp, victim.launch_id)
    own_after = item(cp, own.launch_id)
    refused["sidecar marks in an ECS event"] = (
        victim_after is not None
        and victim_after.state is TaskState.PENDING
        and own_after is not None
        and own_after.state is TaskState.FAILED
    )

    # An event of another task carrying the victim's marks on the Airflow container never replaces its task.
    impostor = {**victim_task, "taskArn": victim_task["taskArn"].rsplit("/", 1)[0] + "/impostor"}
    result = send(task_event(impostor, last_status="STOPPED", version=9, exit_code=1))
    victim_final = item(cp, victim.launch_id)
    refused["another task's event"] = (
        result == "Stale"
        and victim_final is not None
        and victim_final.state is TaskState.PENDING
        and victim_final.task_arn == victim_task["taskArn"]
    )

    # The launcher's look for the task an earlier delivery started (a redelivery past its deadline) reads the
    # Airflow container's marks too: a listed task whose sidecar override carries a late launch's marks (forged
    # into DescribeTasks' answer, as if they had got through) is not taken for it.
    late = launch_request("late", deadline_in=-1)
    late_marks = [{"name": "AIRFLOW_ECS_EVENT_LAUNCH_ID", "value": late.launch_id}]

    def forge(parsed: dict[str, Any], **_: Any) -> None:
        for task in parsed.get("tasks", []):
            task["overrides"]["containerOverrides"].append({"name": "sidecar", "environment": late_marks})

    launcher_handler.launcher().ecs.meta.events.register("after-call.ecs.DescribeTasks", forge)
    invoke(cp, [late.to_json()])
    late_after = item(cp, late.launch_id)
    refused["sidecar marks in a task the launcher looks for"] = (
        late_after is not None and late_after.state is TaskState.EXPIRED and late_after.task_arn is None
    )
    assert refused == dict.fromkeys(refused, True), refused
    # The control: the victim's own task still drives its item.
    send(task_event(victim_task, last_status="RUNNING", version=3))
    controlled = item(cp, victim.launch_id)
    assert controlled is not None and controlled.state is TaskState.RUNNING
    figure(
        f"S4 event binding to another launch refused: {sum(refused.values())} of {len(refused)} ({', '.join(refused)})"
    )


# ---------------------------------------------------------------------------------------------------------- S5

SCHEDULERS = (
    "arn:aws:iam::123456789012:role/airflow-scheduler",
    "arn:aws:iam::123456789012:role/team-b/airflow-scheduler",
)
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack with the security settings set: its template as a dict."""
    from tests.infra.conftest import synth_in_process

    synth = synth_in_process(
        tmp_path_factory.mktemp("secured"),
        schedulerRoleArns=list(SCHEDULERS),
        kmsKeyArn=KEY_ARN,
        team="team-a",
    )
    return dict(synth.template.to_json())


def _one(
    template: dict[str, Any], kind: str, where: Callable[[str, dict[str, Any]], bool] = lambda _k, _r: True
) -> tuple[str, dict[str, Any]]:
    """Return the one resource of type ``kind`` (logical id, resource) for which ``where(id, resource)`` holds."""
    found = [(k, r) for k, r in template["Resources"].items() if r["Type"] == kind and where(k, r)]
    assert len(found) == 1, [k for k, _ in found]
    return found[0]


def _queue(template: dict[str, Any], prefix: str) -> str:
    """Return the logical id of the one SQS queue whose id starts with ``prefix``."""
    (found,) = [
        k for k, r in template["Resources"].items() if k.startswith(prefix) and r["Type"] == "AWS::SQS::Queue"
    ]
    return found


def _launch_queue(template: dict[str, Any]) -> str:
    return _queue(template, "LauncherQueue")


def test_s5_the_template_lets_only_the_schedulers_and_the_control_plane_in(
    secured: dict[str, Any], figure: Callable[[str], None]
) -> None:
    t = secured
    queue = _launch_queue(t)
    _, queue_policy = _one(
        t, "AWS::SQS::QueuePolicy", lambda _k, r: {"Ref": queue} in r["Properties"]["Queues"]
    )
    statements = queue_policy["Properties"]["PolicyDocument"]["Statement"]
    rule_id, rule = _one(t, "AWS::Events::Rule", lambda k, _r: k.startswith("ControlBusRelaunchRule"))
    rule_arn = {"Fn::GetAtt": [rule_id, "Arn"]}
    tls = {"aws:SecureTransport": "true"}

    def may_send(principal_arn: str | None, source_arn: Any = None) -> bool:
        context: dict[str, Any] = dict(tls)
        if principal_arn is not None:
            context["aws:PrincipalArn"] = principal_arn
        if source_arn is not None:
            context["aws:SourceArn"] = source_arn
        return not denied(statements, "sqs:SendMessage", "*", context)

    allowed = [may_send(arn) for arn in SCHEDULERS] + [may_send(None, rule_arn)]
    outsiders = {
        "another role": may_send("arn:aws:iam::123456789012:role/PowerUser"),
        "the account root": may_send("arn:aws:iam::123456789012:root"),
        "a user": may_send("arn:aws:iam::123456789012:user/dev"),
        "a lookalike role": may_send("arn:aws:iam::123456789012:role/airflow-scheduler-evil"),
        "the task role": may_send("arn:aws:iam::123456789012:role/AirflowEcsEventExecutor-TaskRole"),
        "another account's scheduler": may_send("arn:aws:iam::210987654321:role/airflow-scheduler"),
        "another EventBridge rule": may_send(None, "arn:aws:events:eu-west-1:123456789012:rule/mine"),
        "an AWS service without a source": may_send(None),
    }
    assert all(allowed), allowed
    assert not any(outsiders.values()), outsiders
    # Without TLS nobody sends, not even a scheduler.
    assert denied(
        statements,
        "sqs:SendMessage",
        "*",
        {"aws:PrincipalArn": SCHEDULERS[0], "aws:SecureTransport": "false"},
    )

    # The bus: only the control plane's roles publish.
    _, bus_policy = _one(t, "AWS::Events::EventBusPolicy")
    bus_statement = bus_policy["Properties"]["Statement"]
    control_roles = [
        {"Fn::GetAtt": [k, "Arn"]}
        for k, r in t["Resources"].items()
        if r["Type"] == "AWS::IAM::Role"
        and any(n in k for n in ("Launcher", "Status", "Reconciler"))
        and "Handler" in k
    ]
    assert len(control_roles) == 3, control_roles
    publishers = [
        not denied([bus_statement], "events:PutEvents", "*", {"aws:PrincipalArn": r}) for r in control_roles
    ]
    outside_publishers = [
        not denied([bus_statement], "events:PutEvents", "*", {"aws:PrincipalArn": arn})
        for arn in (*SCHEDULERS, "arn:aws:iam::123456789012:role/PowerUser")
    ] + [not denied([bus_statement], "events:PutEvents", "*", {})]
    assert all(publishers) and not any(outside_publishers)

    # The relaunch rule forwards only relaunch requests.
    assert rule["Properties"]["EventPattern"] == bus.RELAUNCH_EVENT_PATTERN

    # The KMS option: the launch queue and its DLQ, the table and the task log group use the key.
    key_users = {
        "launch queue": t["Resources"][queue]["Properties"].get("KmsMasterKeyId"),
        "launch DLQ": next(
            r["Properties"].get("KmsMasterKeyId")
            for k, r in t["Resources"].items()
            if k.startswith("LauncherDeadLetterQueue") and r["Type"] == "AWS::SQS::Queue"
        ),
        "status failed-events queue": t["Resources"][_queue(t, "StatusFailedEventsQueue")]["Properties"].get(
            "KmsMasterKeyId"
        ),
        "ECS rule's DLQ": t["Resources"][_queue(t, "StatusDeadLetterQueue")]["Properties"].get(
            "KmsMasterKeyId"
        ),
        "tasks table": _one(t, "AWS::DynamoDB::Table")[1]["Properties"]["SSESpecification"].get(
            "KMSMasterKeyId"
        ),
        "task log group": _one(t, "AWS::Logs::LogGroup", lambda k, _r: k.startswith("TaskRuntimeTaskLogs"))[
            1
        ]["Properties"].get("KmsKeyId"),
    }
    assert key_users == dict.fromkeys(key_users, KEY_ARN), key_users
    # One stack per team: the launcher serves the stack's team only.
    _, launcher = _one(t, "AWS::Lambda::Function", lambda k, _r: k.startswith("LauncherHandler"))
    assert launcher["Properties"]["Environment"]["Variables"]["TEAM"] == "team-a"
    figure(
        f"S5 template: queue senders allowed {sum(allowed)} of {len(allowed)} (2 scheduler roles, the relaunch rule), "
        f"outsiders denied {len(outsiders) - sum(outsiders.values())} of {len(outsiders)}; bus publishers "
        f"allowed {sum(publishers)} of 3 control-plane roles, others denied "
        f"{len(outside_publishers) - sum(outside_publishers)} of {len(outside_publishers)}; relaunch rule matches "
        f"detail.kind=relaunch; KMS key on {len(key_users)} of {len(key_users)} ({', '.join(key_users)})"
    )


def test_the_policy_evaluator_is_really_evaluating() -> None:
    deny = {
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sqs:SendMessage",
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": ["arn:aws:iam::1:role/a"]}},
    }
    assert denied([deny], "sqs:SendMessage", "*", {"aws:PrincipalArn": "arn:aws:iam::1:role/b"})
    assert not denied([deny], "sqs:SendMessage", "*", {"aws:PrincipalArn": "arn:aws:iam::1:role/a"})
    assert denied([deny], "sqs:SendMessage", "*", {})
    assert not denied([deny], "sqs:ReceiveMessage", "*", {})
    assert denied([{**deny, "Action": "sqs:*"}], "sqs:SendMessage", "*", {})
