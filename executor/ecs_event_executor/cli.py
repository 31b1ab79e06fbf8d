"""Operator commands: list tasks by state, show one task's history and reason, replay a dead-letter queue.

``ecs-event-executor tasks``, ``ecs-event-executor show LAUNCH_ID``, ``ecs-event-executor replay-dlq``. AWS access
comes from the usual boto3 chain (``--region``/``--endpoint-url`` override it, e.g. for the local mode's
moto_server, which runs from a clone: ``python -m harness.local up``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from pydantic import ValidationError

from ecs_event_executor.control.ecs_state import TaskStateChange
from ecs_event_executor.control.failed_events import (
    REQUEST_PAYLOAD,
    MalformedFailedEvent,
    event_of,
    failure_of,
)
from ecs_event_executor.control.messages import MalformedMessage, describe_validation_error, parse_message
from ecs_event_executor.control.tasks.item import TaskItem
from ecs_event_executor.control.tasks.lifecycle import ACTIVE_STATES, TaskState
from ecs_event_executor.control.tasks.schema import Attr, is_task_key
from ecs_event_executor.control.tasks.table import TaskTable

TABLE_ENV = "AIRFLOW__ECS_EVENT_EXECUTOR__TABLE_NAME"


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _duration(since: str) -> int:
    """Parse 30m / 2h / 1d / 90s into milliseconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not since or since[-1] not in units or not since[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 2h or 1d, got {since!r}")
    return int(since[:-1]) * units[since[-1]] * 1000


def _client(args: argparse.Namespace, service: str) -> Any:
    return boto3.client(service, region_name=args.region, endpoint_url=args.endpoint_url)


def _table(args: argparse.Namespace) -> TaskTable:
    name = args.table or os.environ.get(TABLE_ENV)
    if not name:
        raise SystemExit(f"name the tasks table with --table or {TABLE_ENV}")
    return TaskTable(name, client=_client(args, "dynamodb"))


def _scan(table: TaskTable, states: Sequence[str]) -> Iterator[TaskItem]:
    """Scan the whole table for items in ``states`` (operator use: it reads every item once)."""
    kwargs: dict[str, Any] = {"TableName": table.table_name}
    if states:
        placeholders = {f":s{i}": {"S": s} for i, s in enumerate(states)}
        kwargs.update(
            FilterExpression=f"#s IN ({', '.join(placeholders)})",
            ExpressionAttributeNames={"#s": Attr.STATE},
            ExpressionAttributeValues=placeholders,
        )
    while True:
        resp = table.client.scan(**kwargs)
        for raw in resp.get("Items", []):
            # The heartbeat and the launch requests' side items share the table; they are not tasks.
            if is_task_key(raw.get(Attr.PK, {}).get("S", "")):
                yield TaskItem.from_raw(raw)
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def cmd_tasks(args: argparse.Namespace) -> int:
    table = _table(args)
    states = [s.upper() for s in args.state]
    if args.owner:
        since = int(time.time() * 1000) - args.since
        # The owner's change feed holds what finished (or was retried) lately; what is active is not in it, nor
        # (running tasks) in the stale index: a scan for the active states finds it.
        found = {i.launch_id: i for i in table.items_by_state(args.owner, since_ms=since)}
        active = _scan(table, [s.value for s in ACTIVE_STATES])
        found.update({i.launch_id: i for i in active if i.owner == args.owner})
        items = [i for i in found.values() if not states or i.state.value in states]
    else:
        items = list(_scan(table, states))
    items.sort(key=lambda i: i.last_step_at)
    print(f"{'launch id':40} {'state':10} {'try':>3} {'att':>3} {'changed (UTC)':19}  task / reason")
    for item in items:
        key = item.key
        name = (
            f"{key.dag_id}.{key.task_id}" + (f"[{key.map_index}]" if key.map_index >= 0 else "")
            if key
            else "?"
        )
        detail = item.reason or (item.task_arn or "").rsplit("/", 1)[-1]
        print(
            f"{item.launch_id:40} {item.state.value:10} {key.try_number if key else '-':>3} {item.attempt:>3} "
            f"{_when(item.last_step_at):19}  {name}  {detail}"
        )
    counts = {s.value: sum(1 for i in items if i.state is s) for s in TaskState}
    print("total", len(items), " ".join(f"{k}={v}" for k, v in counts.items() if v))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    table = _table(args)
    item = table.get(args.launch_id)
    if item is None:
        print(f"no task item {args.launch_id!r} (unknown, or expired by TTL)", file=sys.stderr)
        return 1
    fields = {
        "launch id": item.launch_id,
        "task": item.key.model_dump() if item.key else None,
        "state": item.state.value,
        "reason": item.reason,
        "owner": item.owner,
        "attempt": f"{item.attempt} of {item.max_attempts}",
        "ECS task": item.task_arn,
        "ECS status": item.ecs_last_status,
        "stop code": item.stop_code,
        "exit code": item.exit_code,
        "queued": _when(item.queued_at),
        "launched": _when(item.launched_at),
        "running": _when(item.running_at),
        "finished": _when(item.finished_at),
        "cancel requested": item.cancel_requested,
    }
    for name, value in fields.items():
        print(f"{name:>16}: {value if value is not None else '-'}")
    print("         history:")
    for entry in item.history:
        extra = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("at", "state"))
        print(f"   {_when(entry.get('at'))}  {entry.get('state', '?'):10} {extra}")
    return 0


def _still_malformed(body: str) -> str | None:
    """Return why a dead-lettered body cannot be handled (None if it can): an ECS task-state event (the ECS rule's
    target DLQ), Lambda's record of a failed status invocation (the failed-events queue) or a launch-queue
    message (the launch DLQ)."""
    try:
        raw = json.loads(body)
    except ValueError:
        raw = None
    if isinstance(raw, dict) and ("detail-type" in raw or REQUEST_PAYLOAD in raw):
        try:
            TaskStateChange.model_validate(event_of(body))
        except MalformedFailedEvent as exc:
            return str(exc)
        except ValidationError as exc:
            return describe_validation_error(exc)
        return None
    try:
        parse_message(body)
    except MalformedMessage as exc:
        return str(exc)
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    """Move messages from a DLQ back to their queue, after the cause was fixed."""
    sqs = _client(args, "sqs")
    moved = kept = 0
    held: list[str] = []  # receipts of messages left in the DLQ, hidden while this run reads on
    while moved + kept < args.max:
        resp = sqs.receive_message(
            QueueUrl=args.dlq_url,
            MaxNumberOfMessages=min(10, args.max - moved - kept),
            MessageAttributeNames=["All"],
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
        )
        messages = resp.get("Messages", [])
        if not messages:
            break
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            # The launcher's FailureReason; EventBridge's ERROR_MESSAGE for an event it could not deliver; Lambda's
            # record of a failed status invocation carries its own (condition and error).
            body = message["Body"]
            reason = next(
                (attributes[k]["StringValue"] for k in ("FailureReason", "ERROR_MESSAGE") if k in attributes),
                failure_of(body),
            )
            problem = _still_malformed(body)
            if problem is not None:
                # Still malformed: replaying it would only send it back here.
                print(f"keep {message['MessageId']}: still malformed ({problem}); was: {reason or '-'}")
                kept += 1
                held.append(message["ReceiptHandle"])
                continue
            print(
                f"{'would replay' if args.dry_run else 'replay'} {message['MessageId']}"
                + (f" (was: {reason})" if reason else "")
            )
            if args.dry_run:
                kept += 1
                held.append(message["ReceiptHandle"])
                continue
            sqs.send_message(QueueUrl=args.to_queue, MessageBody=body)
            sqs.delete_message(QueueUrl=args.dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    for receipt in held:
        # Visible again at once: the replay after a dry run, or after a fix, must not wait for the timeout.
        sqs.change_message_visibility(QueueUrl=args.dlq_url, ReceiptHandle=receipt, VisibilityTimeout=0)
    print(f"replayed {moved}, left {kept} in the dead-letter queue")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecs-event-executor", description=__doc__.splitlines()[0])
    parser.add_argument("--region", default=None, help="AWS region (default: the boto3 chain)")
    parser.add_argument(
        "--endpoint-url", default=None, help="AWS endpoint (e.g. the local mode's moto_server)"
    )
    parser.add_argument("--table", default=None, help=f"tasks table name (default: ${TABLE_ENV})")
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("tasks", help="list tasks, optionally by owner and state")
    tasks.add_argument(
        "--owner", help="an executor's owner id (reads its change index; else scans the table)"
    )
    tasks.add_argument(
        "--state",
        action="append",
        default=[],
        choices=[s.value for s in TaskState] + [s.value.lower() for s in TaskState],
    )
    tasks.add_argument(
        "--since", type=_duration, default=_duration("1d"), help="with --owner: changed within (default 1d)"
    )
    tasks.set_defaults(func=cmd_tasks)

    show = sub.add_parser("show", help="one task's state, reason and history")
    show.add_argument("launch_id")
    show.set_defaults(func=cmd_show)

    replay = sub.add_parser("replay-dlq", help="send dead-lettered messages back after a fix")
    replay.add_argument("--dlq-url", required=True)
    replay.add_argument(
        "--to-queue",
        required=True,
        help="where its messages go: the launch queue URL for the launch DLQ; the status failed-events queue URL "
        "(StatusFailedEventsQueueUrl, replayed by the reconciler) for the ECS-events DLQ",
    )
    replay.add_argument("--max", type=int, default=1000)
    replay.add_argument("--dry-run", action="store_true")
    replay.set_defaults(func=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
