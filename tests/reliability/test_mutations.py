"""Mutation check: each guard the reliability suite claims to prove is removed in turn, and its test must fail.

A guard is removed by rewriting the condition of the task table's conditional writes (monkeypatched here, never
in product code); the scenario of the test that proves it then runs on a smaller N. A mutation that no write
uses is reported as such: the check would prove nothing.

ECS version order and "a terminal state is final" back each other up: every event that could move a finished
task back is older than the event that finished it, and every older event that could undo a later one would
undo a finished task. So R2 cannot fail with only one of them removed (measured: 0 wrong end states either way,
also with relaunches, sidecars and late events of an earlier attempt); the check removes them together, and
prints each alone as "backed up".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ecs_event_executor.control.task_item import IS_ACTIVE, TaskTable

from tests.conftest import ControlPlane
from tests.reliability.test_faults import run_r1, run_r2

pytestmark = pytest.mark.reliability

N_R1 = 100
# R2 with as many relaunched launches as plain ones: late events of attempt 1 meet attempt 2 often.
N_R2 = 100


@dataclass(frozen=True)
class Mutation:
    name: str
    test: str  # "R1" or "R2"
    rewrite: Callable[[str], str]


def _without_claim(condition: str) -> str:
    # claim_attempt (LAUNCHING, same attempt, no task recorded, no live lease): any delivery takes the launch.
    if "(attribute_not_exists(#l) OR #l < :now)" in condition:
        return "attribute_exists(#s)"
    return condition


def _without_version_order(condition: str) -> str:
    # apply_ecs_event and schedule_relaunch: an event no longer needs a newer detail.version than the last one.
    return condition.replace("(attribute_not_exists(#v) OR #v < :v)", "attribute_exists(#a)")


def _without_terminal_is_final(condition: str) -> str:
    # Every write that requires an active item accepts a finished one too.
    return condition.replace(IS_ACTIVE, "attribute_exists(#s)")


def _without_attempt_guard(condition: str) -> str:
    # apply_ecs_event and schedule_relaunch: an event of an earlier attempt's ECS task applies to the current one.
    if "#v" in condition and condition.startswith("#a = :a AND "):
        return condition.removeprefix("#a = :a AND ")
    return condition


def _without_order_and_finality(condition: str) -> str:
    return _without_terminal_is_final(_without_version_order(condition))


MUTATIONS = (
    Mutation("claim guard (conditional claim of a launch attempt)", "R1", _without_claim),
    Mutation(
        "version order and terminal-is-final (each backs the other up)", "R2", _without_order_and_finality
    ),
    Mutation("events apply only to the attempt that started the task", "R2", _without_attempt_guard),
)
# Removed alone, these are covered by another guard: run and printed, not counted.
BACKED_UP = (
    Mutation("version order alone", "R2", _without_version_order),
    Mutation("terminal-is-final alone", "R2", _without_terminal_is_final),
)


def _mutate(monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[str], str]) -> list[int]:
    """Rewrite every conditional write's condition; return a one-element counter of the writes it changed."""
    changed = [0]
    original = TaskTable._update

    def mutated(self: TaskTable, launch_id: str, *, condition: str, **kwargs: Any) -> Any:
        rewritten = rewrite(condition)
        changed[0] += rewritten != condition
        return original(self, launch_id, condition=rewritten, **kwargs)

    monkeypatch.setattr(TaskTable, "_update", mutated)
    return changed


def test_each_guard_removed_fails_its_test(
    control_plane: ControlPlane, figure: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    caught = 0
    lines = []
    for seed, mutation in enumerate(MUTATIONS + BACKED_UP, start=10):
        with monkeypatch.context() as patch:
            changed = _mutate(patch, mutation.rewrite)
            if mutation.test == "R1":
                r1 = run_r1(control_plane, N_R1, seed=seed)
                failed = not r1.ok
                detail = (
                    f"{r1.run_task_calls} RunTask calls for {r1.legitimate_calls} legitimate, "
                    f"{r1.duplicates} duplicate tasks"
                )
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
