"""Issue 14 figures: R9 (crash, redeploy, redelivery), R11 (tokens expiring during throttling), R4 extended
(hours of throttling through the real handler, settle, the pacer and maxReceiveCount)."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from ecs_event_executor.control.launching import Launcher, LauncherSettings, RetryLater
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.executor import outcome_of

from harness.aws_shapes import received_sqs_event
from infra.launcher import LAUNCHER_TIMEOUT, MAX_BATCHING_WINDOW, MAX_RECEIVE_COUNT, queue_visibility_timeout
from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.reliability.test_faults import ecs_tasks_by_launch
from tests.support.aws import ClientTokenSemantics, LambdaContextStub, body_event
from tests.support.requests import requests_for

pytestmark = pytest.mark.reliability


@pytest.fixture(autouse=True)
def quiet_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    launcher_handler.logger.setLevel("CRITICAL")  # R9 crashes 200 invocations on purpose


def ecs_error(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


def no_capacity() -> tuple[AWSResponse, dict[str, Any]]:
    failure = {"reason": "Capacity is unavailable at this time. Please try again later"}
    return AWSResponse("https://ecs.amazonaws.com/", 200, {}, None), {"tasks": [], "failures": [failure]}


def test_r9_crash_after_run_task_then_a_redeploy_then_redelivery_fails_nothing_and_duplicates_nothing(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 200
    rng = random.Random(9)
    now = [time.time()]
    clock = lambda: now[0]  # noqa: E731
    tokens = ClientTokenSemantics()
    first = Launcher(
        LauncherSettings.from_env(), table=TaskTable(control_plane.table, clock=clock), clock=clock
    )
    tokens.attach(first.ecs)
    launcher_handler._launcher = first
    queued = datetime.fromtimestamp(now[0], UTC)
    # Half must start within 5 minutes, half within an hour: the redelivery comes after 10 minutes.
    requests = requests_for(n, queued, lambda i: 300 if i % 2 else 3600)
    original = first.table.record_launched

    def crash(launch_id: str, attempt: int, **kwargs: Any) -> Any:
        raise RuntimeError("Lambda killed between RunTask and recording the task")

    first.table.record_launched = crash  # type: ignore[method-assign]
    for start in range(0, n, 10):
        launcher_handler.handler(
            body_event([r.to_json() for r in requests[start : start + 10]], control_plane.queue_arn),
            LambdaContextStub(),
        )
    first.table.record_launched = original  # type: ignore[method-assign]
    started_before_crash = sum(ecs_tasks_by_launch(control_plane).values())

    # A deploy changes the task definition's parameters: subnets, a group and a tag for every task.
    now[0] += 600
    redeployed = dict(
        control_plane.env,
        RUN_TASK_KWARGS='{"group": "family:v2", "tags": [{"key": "release", "value": "v2"}]}',
    )
    second = Launcher(
        LauncherSettings.from_env(redeployed), table=TaskTable(control_plane.table, clock=clock), clock=clock
    )
    tokens.attach(second.ecs)
    launcher_handler._launcher = second
    deliveries = [r.to_json() for r in requests]
    rng.shuffle(deliveries)
    for start in range(0, n, 10):
        assert launcher_handler.handler(
            body_event(deliveries[start : start + 10], control_plane.queue_arn, receive_count=2),
            LambdaContextStub(),
        ) == {"batchItemFailures": []}

    counts = ecs_tasks_by_launch(control_plane)
    final = TaskTable(control_plane.table).get_many(r.launch_id for r in requests)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    failed_while_running = [
        i for i in final.values() if i.state in (TaskState.FAILED, TaskState.EXPIRED) and counts[i.launch_id]
    ]
    following = [i for i in final.values() if i.state is TaskState.PENDING and i.task_arn]
    past_deadline = sum(1 for r in requests if r.launch_deadline and r.launch_deadline.timestamp() < now[0])
    figure(
        f"R9 crash after RunTask, redeploy, redelivery: {len(failed_while_running)} of {n} failed while running, "
        f"{duplicates} duplicate tasks; {len(following)} follow the task the token started "
        f"({tokens.conflicts} ConflictExceptions, {past_deadline} redelivered past their deadline)"
    )
    assert started_before_crash == n
    assert failed_while_running == [] and duplicates == 0
    assert len(following) == n and len(counts) == n


def test_r11_tokens_that_expire_during_throttling_are_handed_back_never_started_late(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 200
    margin = 180.0  # [ecs_event_executor] launch_start_margin_seconds
    rng = random.Random(11)
    start = time.time()
    sim = [start]
    table = TaskTable(control_plane.table, clock=lambda: sim[0])
    launcher = Launcher(LauncherSettings.from_env(), table=table, clock=lambda: sim[0])
    # Each token expires 5 to 15 minutes after queueing; the executor's deadline is the expiry less the margin.
    expiry = {i: rng.uniform(300, 900) for i in range(n)}
    requests = requests_for(n, datetime.fromtimestamp(start, UTC), lambda i: expiry[i] - margin)
    token_expires = {r.launch_id: start + expiry[i] for i, r in enumerate(requests)}

    def throttled(**_: Any) -> Any:
        # The first ten minutes: ECS throttles almost every call; later, one in three.
        limit = 0.97 if sim[0] - start < 600 else 0.66
        return ecs_error("ThrottlingException", "Rate exceeded") if rng.random() < limit else None

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", throttled)
    pending = [(start, 1, r.to_json()) for r in requests]
    while pending:
        pending.sort()
        sim[0] = max(sim[0], pending[0][0])
        batch, pending = pending[:10], pending[10:]
        for _visible_at, count, body in batch:
            try:
                launcher.handle(body, receive_count=count)
            except RetryLater as retry:
                pending.append((sim[0] + retry.delay_seconds, count + 1, body))
        sim[0] += 0.2

    final = table.get_many(r.launch_id for r in requests)
    started = [i for i in final.values() if i.task_arn]
    late = [i for i in started if (i.launched_at or 0) / 1000 > token_expires[i.launch_id] - margin]
    handed_back = [i for i in final.values() if i.state is TaskState.EXPIRED]
    failed = [i for i in final.values() if i.state is TaskState.FAILED]
    requeued = [i for i in handed_back if outcome_of(i).action == "handed_back"]
    figure(
        f"R11 tokens expiring during throttling: {len(late)} of {len(started)} started tasks had less than the "
        f"{margin:.0f} s margin; {len(handed_back)} handed back to Airflow's requeue, {len(failed)} failed"
    )
    assert late == [] and failed == []
    assert len(started) + len(handed_back) == n
    assert handed_back and requeued == handed_back
    assert sum(ecs_tasks_by_launch(control_plane).values()) == len(started)


@dataclass
class _Message:
    body: str
    visible_at: float
    receives: int = 0


@dataclass
class SimulatedQueue:
    """The launch queue on simulated time, as the launcher's handler uses it (visibility, copies, redrive).

    SQS's own semantics that matter here: a received message is invisible for the queue's visibility timeout
    unless the consumer changes it; a message received more than ``maxReceiveCount`` times goes to the DLQ.
    """

    clock: Callable[[], float]
    queue_url: str
    dlq_url: str
    visibility_timeout: float
    max_receive_count: int = MAX_RECEIVE_COUNT
    messages: dict[str, _Message] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=itertools.count)
    most_receives: int = 0

    def send_message(
        self, QueueUrl: str, MessageBody: str, DelaySeconds: int = 0, **_: Any
    ) -> dict[str, str]:
        if QueueUrl == self.dlq_url:
            self.dead.append(MessageBody)
        else:
            self.messages[f"m{next(self._ids)}"] = _Message(MessageBody, self.clock() + DelaySeconds)
        return {"MessageId": "x"}

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.messages[ReceiptHandle].visible_at = self.clock() + VisibilityTimeout

    def next_visible(self) -> float | None:
        return min((m.visible_at for m in self.messages.values()), default=None)

    def receive(self, limit: int = 10) -> list[dict[str, Any]]:
        now = self.clock()
        out: list[dict[str, Any]] = []
        for handle, message in sorted(self.messages.items(), key=lambda kv: kv[1].visible_at):
            if len(out) == limit or message.visible_at > now:
                break
            if message.receives >= self.max_receive_count:
                # The redrive policy: moved to the DLQ instead of being received again.
                self.dead.append(self.messages.pop(handle).body)
                continue
            message.receives += 1
            self.most_receives = max(self.most_receives, message.receives)
            message.visible_at = now + self.visibility_timeout
            out.append(
                {
                    "MessageId": handle,
                    "ReceiptHandle": handle,
                    "Body": message.body,
                    "Attributes": {"ApproximateReceiveCount": str(message.receives)},
                }
            )
        return out

    def delete(self, handle: str) -> None:
        self.messages.pop(handle, None)


def test_r4_extended_two_hours_of_throttling_and_capacity_failures_launch_everything_and_dead_letter_nothing(
    control_plane: ControlPlane, figure: Callable[[str], None]
) -> None:
    n = 60  # each message is retried about 80 times over the two hours: 60 keep the test to minutes
    queued_timeout = 3 * 3600.0  # [scheduler] task_queued_timeout
    stormy = 2 * 3600.0
    rng = random.Random(44)
    start = time.time()
    sim = [start]
    clock = lambda: sim[0]  # noqa: E731
    settings = LauncherSettings.from_env(dict(control_plane.env, LAUNCHER_RUN_TASK_RATE="4"))
    launcher = Launcher(
        settings,
        table=TaskTable(control_plane.table, clock=clock),
        clock=clock,
        sleep=lambda s: sim.__setitem__(0, sim[0] + s),
    )
    launcher_handler._launcher = launcher
    queue = SimulatedQueue(
        clock,
        control_plane.queue_url,
        control_plane.dlq_url,
        visibility_timeout=queue_visibility_timeout(LAUNCHER_TIMEOUT, MAX_BATCHING_WINDOW).to_seconds(),
    )
    launcher_handler._sqs = queue
    injected = Counter[str]()

    def stormy_ecs(**_: Any) -> Any:
        if sim[0] - start >= stormy:
            return None
        if rng.random() < 0.8:
            injected["throttled"] += 1
            return ecs_error("ThrottlingException", "Rate exceeded")
        injected["capacity"] += 1
        return no_capacity()

    launcher.ecs.meta.events.register("before-call.ecs.RunTask", stormy_ecs)
    requests = requests_for(n, datetime.fromtimestamp(start, UTC), lambda i: queued_timeout - 180)
    for r in requests:
        queue.send_message(QueueUrl=queue.queue_url, MessageBody=r.to_json())
    invocations = 0
    while queue.messages:
        received = queue.receive()
        if not received:
            next_at = queue.next_visible()
            if next_at is None:
                break  # the last messages were redriven to the DLQ
            sim[0] = max(sim[0], next_at)
            continue
        invocations += 1
        response = launcher_handler.handler(
            received_sqs_event(received, control_plane.queue_arn), LambdaContextStub(timeout_seconds=60)
        )
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in received:
            if m["MessageId"] not in failed:
                queue.delete(m["ReceiptHandle"])
        sim[0] += 0.5
        assert sim[0] - start < queued_timeout, "the simulation ran past the queued timeout"

    final = TaskTable(control_plane.table).get_many(r.launch_id for r in requests)
    launched = [i for i in final.values() if i.state is TaskState.PENDING]
    latest = max((i.launched_at or 0) / 1000 for i in final.values()) - start
    figure(
        f"R4 extended ({stormy / 3600:.0f} h of throttling and capacity failures, task_queued_timeout "
        f"{queued_timeout / 3600:.0f} h, real handler + settle + pacer + maxReceiveCount {MAX_RECEIVE_COUNT}): "
        f"launched {len(launched)} of {n}, {len(queue.dead)} in the DLQ "
        f"({injected['throttled']} throttled, {injected['capacity']} capacity failures; most receives of one "
        f"message {queue.most_receives}; last launch at {latest / 60:.0f} min; {invocations} invocations)"
    )
    assert len(launched) == n and queue.dead == []
    assert queue.most_receives < MAX_RECEIVE_COUNT
    assert latest < queued_timeout - 180
