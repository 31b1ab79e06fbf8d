"""Mutation check: each guard the reliability suite claims to prove is removed in turn, and its test must fail.

A guard is removed by dropping conditions from the task table's conditional writes (``Update.arguments``
monkeypatched here, never in product code); the scenario of the test that proves it then runs on a smaller N. A mutation that no write
uses is reported as such: the check would prove nothing.

ECS version order and "a terminal state is final" back each other up: every event that could move a finished
task back is older than the event that finished it, and every older event that could undo a later one would
undo a finished task. So R2 cannot fail with only one of them removed (measured: 0 wrong end states either way,
also with relaunches, sidecars and late events of an earlier attempt); the check removes them together, and
prints each alone as "backed up". Version order alone is proved mid-run instead ("O"): a Spot interruption warning
(RUNNING, desired STOPPED) overtaken by the plain RUNNING event before it and by redeliveries of that event; no
state is final there and a state may follow itself, so only the version keeps the item on the newest event. The attempt guard and the task binding (an event of another ECS task never
replaces the task an attempt recorded) are a second such pair: an earlier attempt's task has another ARN.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable
from ecs_event_executor.control.tasks.updates import Update

from lambdas.launcher import handler as launcher_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane
from tests.reliability.test_faults import run_r1, run_r2
from tests.support.ecs_events import task_event
from tests.support.handlers import deliver, launch

pytestmark = pytest.mark.reliability

N_R1 = 100
# R2 with as many relaunched launches as plain ones: late events of attempt 1 meet attempt 2 often.
N_R2 = 100
N_ORDER = 20

_NAME = re.compile(r"#n\d+")
_PLACEHOLDER = re.compile(r"#n\d+|:v\d+")

# A mutation sees one write's conditions (the conjuncts of its ConditionExpression) with attribute names spelled
# out, and says which to keep.
Keep = Callable[[list[str]], list[bool]]


@dataclass(frozen=True)
class Mutation:
    name: str
    test: str  # "R1", "R2" or "O" (run_order)
    keep: Keep


def _event_write(conditions: list[str]) -> bool:
    # apply_ecs_event and schedule_relaunch: the writes an ECS event makes carry a version condition.
    return any("ecs_version" in c for c in conditions)


def _without_claim(conditions: list[str]) -> list[bool]:
    # claim_attempt (LAUNCHING, same attempt, no task recorded, no live lease): any delivery takes the launch.
    claim = any("lease_until <" in c for c in conditions)
    return [not claim] * len(conditions)


def _without_version_order(conditions: list[str]) -> list[bool]:
    # An event no longer needs a newer detail.version than the last one applied.
    return ["ecs_version <" not in c for c in conditions]


def _without_terminal_is_final(conditions: list[str]) -> list[bool]:
    # An event's write accepts an item in any state, a finished one too.
    event = _event_write(conditions)
    return [not (event and c.startswith("state IN (")) for c in conditions]


def _without_attempt_guard(conditions: list[str]) -> list[bool]:
    # An event of an earlier attempt's ECS task applies to the current attempt.
    event = _event_write(conditions)
    return [not (event and re.fullmatch(r"attempt = :v\d+", c) is not None) for c in conditions]


def _without_task_binding(conditions: list[str]) -> list[bool]:
    # An event of another ECS task may replace the task an attempt recorded (the security change's guard).
    event = _event_write(conditions)
    return [not (event and "task_arn = " in c and "attribute_not_exists(task_arn)" in c) for c in conditions]


def _without_attempt_and_task_binding(conditions: list[str]) -> list[bool]:
    attempt, binding = _without_attempt_guard(conditions), _without_task_binding(conditions)
    return [a and b for a, b in zip(attempt, binding, strict=True)]


def _without_order_and_finality(conditions: list[str]) -> list[bool]:
    order, finality = _without_version_order(conditions), _without_terminal_is_final(conditions)
    return [a and b for a, b in zip(order, finality, strict=True)]


MUTATIONS = (
    Mutation("claim guard (conditional claim of a launch attempt)", "R1", _without_claim),
    Mutation(
        "version order and terminal-is-final (each backs the other up)", "R2", _without_order_and_finality
    ),
    Mutation(
        "version order alone, mid-run (a late RUNNING overtakes a Spot warning)", "O", _without_version_order
    ),
    # An earlier attempt's task has another ARN than the one the current attempt recorded, so the attempt guard
    # and the task binding (an event never replaces the item's task) back each other up, like order and finality.
    Mutation(
        "events apply only to the attempt that started the task, and to its task (each backs the other up)",
        "R2",
        _without_attempt_and_task_binding,
    ),
)
# Removed alone, these are covered by another guard: run and printed, not counted.
BACKED_UP = (
    Mutation("version order alone", "R2", _without_version_order),
    Mutation("terminal-is-final alone", "R2", _without_terminal_is_final),
    Mutation("the attempt guard alone", "R2", _without_attempt_guard),
    Mutation("the task binding alone", "R2", _without_task_binding),
)


def run_order(cp: ControlPlane, n: int, *, seed: int) -> list[str]:
    """Deliver each task's RUNNING (v3) and Spot interruption warning (v4) shuffled, up to 3x duplicated, and one
    more late copy of the RUNNING; return the launch ids whose item does not show the warning, the newest event."""
    rng = random.Random(seed)
    launcher_handler.reset()
    status_handler.reset()
    events: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    launch_ids = []
    for i in range(n):
        launch_id, task = launch(cp, task_id=f"order-{seed}-{i}")
        launch_ids.append(launch_id)
        running = task_event(task, last_status="RUNNING", version=3)
        warning = task_event(
            task,
            last_status="RUNNING",
            desired_status="STOPPED",
            version=4,
            stop_code="SpotInterruption",
            stopped_reason="Your Spot Task was interrupted.",
        )
        events += [running] * rng.randint(1, 3) + [warning] * rng.randint(1, 3)
        late.append(running)
    rng.shuffle(events)
    for start in range(0, len(events), 10):
        assert deliver(events[start : start + 10]) == []
    assert deliver(late) == []
    items = TaskTable(cp.table).get_many(launch_ids)
    return [
        launch_id
        for launch_id in launch_ids
        if (items[launch_id].state, items[launch_id].ecs_version) != (TaskState.RUNNING, 4)
        or not (items[launch_id].reason or "").startswith("stopping:")
    ]


def _mutate(monkeypatch: pytest.MonkeyPatch, keep: Keep) -> list[int]:
    """Drop conditions from every conditional UpdateItem as ``keep`` says; return a counter of writes changed."""
    changed = [0]
    original = Update.arguments

    def arguments(self: Update) -> dict[str, Any]:
        conditions = list(self._conditions)
        kept = keep([_NAME.sub(lambda m: self._names[m.group()], c) for c in conditions])
        if all(kept):
            return original(self)
        changed[0] += 1
        self._conditions = [c for c, k in zip(conditions, kept, strict=True) if k]
        try:
            args = original(self)
        finally:
            self._conditions = conditions
        # DynamoDB refuses placeholders no expression uses.
        used = set(_PLACEHOLDER.findall(f"{args['UpdateExpression']} {args['ConditionExpression']}"))
        args["ExpressionAttributeNames"] = {
            k: v for k, v in args["ExpressionAttributeNames"].items() if k in used
        }
        args["ExpressionAttributeValues"] = {
            k: v for k, v in args["ExpressionAttributeValues"].items() if k in used
        }
        if not args["ConditionExpression"]:
            del args["ConditionExpression"]
        return args

    monkeypatch.setattr(Update, "arguments", arguments)
    return changed


def test_each_guard_removed_fails_its_test(
    control_plane: ControlPlane, figure: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    caught = 0
    lines = []
    for seed, mutation in enumerate(MUTATIONS + BACKED_UP, start=10):
        with monkeypatch.context() as patch:
            changed = _mutate(patch, mutation.keep)
            if mutation.test == "R1":
                r1 = run_r1(control_plane, N_R1, seed=seed)
                failed = not r1.ok
                detail = (
                    f"{r1.run_task_calls} RunTask calls for {r1.legitimate_calls} legitimate, "
                    f"{r1.duplicates} duplicate tasks"
                )
            elif mutation.test == "O":
                behind = run_order(control_plane, N_ORDER, seed=seed)
                failed = bool(behind)
                detail = f"{len(behind)} of {N_ORDER} running tasks moved back to an older event"
            else:
                wrong, _events = run_r2(control_plane, N_R2, seed=seed, relaunches=N_R2)
                failed = bool(wrong)
                detail = f"{len(wrong)} tasks in a wrong final state"
        assert changed[0] > 0, f"mutation {mutation.name!r} changed no write: it proves nothing"
        if mutation in BACKED_UP:
            verdict = "caught" if failed else "backed up"
            lines.append(f"{verdict}: {mutation.name} removed -> {mutation.test} {detail}")
            continue
        caught += failed
        lines.append(
            f"{'caught' if failed else 'MISSED'}: {mutation.name} removed -> {mutation.test} {detail}"
        )
    for line in lines:
        figure(f"M {line}")
    figure(f"mutations caught: {caught} of {len(MUTATIONS)}")
    assert caught == len(MUTATIONS), lines
