"""The transition table is what the table's writes do: every named write, from every state, against moto.

A write that moves an item into a state is accepted only from a state the table allows to move there (and, for
the writes meant for them, from every such state); a write that only annotates an item never changes its state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from ecs_event_executor.control.messages import CancelRequest
from ecs_event_executor.control.tasks.item import EcsSnapshot, serialize
from ecs_event_executor.control.tasks.lifecycle import (
    ACTIVE_STATES,
    INITIAL_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    TaskState,
    sources_of,
)
from ecs_event_executor.control.tasks.schema import Attr, active_shard
from ecs_event_executor.control.tasks.table import TaskTable

from tests.support.aws import REGION, create_table
from tests.support.requests import launch_request

ARN = "arn:aws:ecs:eu-west-1:123456789012:task/airflow/0123456789abcdef0123456789abcdef"
OWNER = "default:test"
_ids = itertools.count()

L, P, R = TaskState.LAUNCHING, TaskState.PENDING, TaskState.RUNNING
S, F, C = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED


@pytest.fixture
def table(aws: None) -> Iterator[TaskTable]:
    yield TaskTable(create_table(), client=boto3.client("dynamodb", region_name=REGION))


def put_item(table: TaskTable, state: TaskState) -> str:
    """Write an item in ``state`` at attempt 1, shaped as the system leaves it there; return its launch id."""
    launch_id = f"launch-{next(_ids)}"
    values: dict[str, Any] = {
        Attr.PK: launch_id,
        Attr.OWNER: OWNER,
        Attr.STATE: state.value,
        Attr.REV: 1,
        Attr.ATTEMPT: 1,
        Attr.MAX_ATTEMPTS: 3,
        Attr.HISTORY: {"1L": {"t": 1}},
    }
    if state is not L:  # an ECS task exists from PENDING on
        values.update({Attr.TASK_ARN: ARN, Attr.ECS_VERSION: 1})
    if state.terminal:
        values[Attr.FINISHED_AT] = 1
    else:
        values.update({Attr.ACTIVE: active_shard(launch_id), Attr.CHECKED_AT: 1})
    table.client.put_item(TableName=table.table_name, Item=serialize(values))
    return launch_id


def raw(table: TaskTable, launch_id: str) -> dict[str, Any] | None:
    resp = table.client.get_item(
        TableName=table.table_name, Key={Attr.PK: {"S": launch_id}}, ConsistentRead=True
    )
    return resp.get("Item")


@dataclass(frozen=True)
class Write:
    """A named write of TaskTable: the state it moves an item to (None: it leaves the state alone), the states it
    moves an item from, as the system shapes items (a subset of what the transition table allows), and the states
    in which it writes without moving the item (an annotation: an owner, a task ARN learnt late, a check time)."""

    name: str
    call: Callable[[TaskTable, str], object]
    target: TaskState | None
    moves_from: frozenset[TaskState]
    annotates_from: frozenset[TaskState] = frozenset()


def _snap(state: TaskState) -> EcsSnapshot:
    return EcsSnapshot(state, ARN, 5, "STOPPED" if state.terminal else state.value, reason="why", exit_code=1)


def _apply_event(state: TaskState) -> Write:
    def call(table: TaskTable, launch_id: str) -> object:
        return table.apply_ecs_event(launch_id, 1, _snap(state))

    return Write(f"apply_ecs_event({state})", call, state, sources_of(state))


WRITES = [
    Write("claim_attempt", lambda t, i: t.claim_attempt(i, 1, lease_seconds=60), L, frozenset({L})),
    Write("release_lease", lambda t, i: t.release_lease(i, 1, reason="throttled"), L, frozenset({L})),
    Write(
        "record_launched",
        lambda t, i: t.record_launched(i, 1, task_arn=ARN, cluster_arn=None),
        P,
        frozenset({L, P}),
        # An ECS event came first: the ARN is added, the state stays (a cancelled or expired launch's task is
        # stopped instead).
        frozenset({R, S, F}),
    ),
    Write("fail_launch", lambda t, i: t.fail_launch(i, 1, reason="no capacity"), F, frozenset({L})),
    Write(
        "expire_launch",
        lambda t, i: t.expire_launch(i, 1, reason="token expires"),
        TaskState.EXPIRED,
        frozenset({L}),
    ),
    *(_apply_event(s) for s in (P, R, S, F, C)),
    Write("schedule_relaunch", lambda t, i: t.schedule_relaunch(i, 1, _snap(F)), L, sources_of(L)),
    Write(
        "finish_cancelled",
        lambda t, i: t.finish_cancelled(CancelRequest(launch_id=i, owner=OWNER)),
        C,
        frozenset({L}),
    ),
    # A lost task has an ARN: the reconciler only ends items an ECS task was recorded for.
    Write("fail_lost", lambda t, i: t.fail_lost(i, 1, task_arn=ARN, reason="lost"), F, frozenset({P, R})),
    Write(
        "mark_cancel_requested",
        lambda t, i: t.mark_cancel_requested(i, reason="stop"),
        None,
        frozenset(),
        frozenset(ACTIVE_STATES),
    ),
    Write("set_owner", lambda t, i: t.set_owner(i, "default:other"), None, frozenset(), frozenset(TaskState)),
    Write("touch", lambda t, i: t.touch(i, 1), None, frozenset(), frozenset(ACTIVE_STATES)),
    # The first MISSING answer for a recorded task: noted on an active item that has that ARN.
    Write(
        "mark_missing", lambda t, i: t.mark_missing(i, 1, task_arn=ARN), None, frozenset(), frozenset({P, R})
    ),
]


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.name)
def test_every_write_moves_only_as_the_transition_table_allows(table: TaskTable, write: Write) -> None:
    for state in TaskState:
        launch_id = put_item(table, state)
        before = raw(table, launch_id)
        write.call(table, launch_id)
        after = raw(table, launch_id)
        assert after is not None
        written = after != before
        moved_to = TaskState(after[Attr.STATE]["S"])
        entered = written and write.target is not None and moved_to is write.target
        if entered:
            assert write.target in TRANSITIONS[state], f"{write.name} moved {state} -> {moved_to}"
        else:
            assert moved_to is state, f"{write.name} changed {state} to {moved_to}"
        assert entered == (state in write.moves_from), f"{write.name} from {state}: entered={entered}"
        annotated = written and not entered
        assert annotated == (state in write.annotates_from), (
            f"{write.name} from {state}: annotated={annotated}"
        )


@pytest.mark.parametrize("write", [w for w in WRITES if w.target], ids=lambda w: w.name)
def test_what_a_write_accepts_is_what_the_table_allows(write: Write) -> None:
    assert write.target is not None
    assert write.moves_from <= sources_of(write.target)


def test_every_named_write_is_checked() -> None:
    # Creation is checked below; the heartbeat is not a task item.
    writes = {name for name in vars(TaskTable) if not name.startswith("_")} - {
        "create_for_launch",
        "create_refused",
        "write_heartbeat",
        "note_heartbeat",
    }
    assert writes == {w.name.split("(")[0] for w in WRITES}


def test_items_are_created_only_in_initial_states(table: TaskTable) -> None:
    claim = table.create_for_launch(launch_request(), lease_seconds=60)
    assert claim.item is not None and claim.item.state in INITIAL_STATES


def test_a_refused_launch_is_created_failed_and_never_replaces_an_item(table: TaskTable) -> None:
    request = launch_request()
    assert table.create_refused(request, reason="refused: command")
    item = table.get(request.launch_id)
    assert item is not None and item.state is F and item.state in INITIAL_STATES
    # Another refused message under the same id (a victim's launch) changes nothing.
    assert not table.create_refused(request, reason="other")
    assert table.get(request.launch_id) == item


def test_a_cancel_before_the_launch_creates_the_item_cancelled(table: TaskTable) -> None:
    written, item = table.finish_cancelled(CancelRequest(launch_id="not-launched-yet", owner=OWNER))
    assert written and item is not None and item.state in INITIAL_STATES
    assert [e["state"] for e in item.history] == [C.value]
    # The launch then finds it and does nothing.
    assert table.get("not-launched-yet") == item


def test_the_table_is_closed_and_terminal_states_are_final() -> None:
    assert set(TRANSITIONS) == set(TaskState)
    assert all(not TRANSITIONS[s] for s in TERMINAL_STATES)
    assert R not in sources_of(P)  # a late PENDING event never hides a running task
    assert sources_of(L) == set(ACTIVE_STATES)  # a relaunch starts from any active state
    with pytest.raises(ValueError, match="does not allow SUCCEEDED -> FAILED"):
        sources_of(F, only={L, S})
