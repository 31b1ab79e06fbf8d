"""The tasks table's vocabulary: attribute names, keys, indexes, retention and its CreateTable arguments.

One item per launch (one queueing of one Airflow task instance try), keyed by the launch id, beside three kinds of
side items whose keys hold a '#' (launch ids have none): the control plane's heartbeat, each launch's request, and
each task definition the launcher derived for an image (``task-definition#<family>``, ``registrations.py``).

Every write bumps ``rev``. A write the executor must act on (a terminal state, a relaunch, a retry reason, a new
owner) also stamps ``changed_at`` (epoch ms), which the sparse ``by_owner_changed`` index sorts by, so an executor
reads only what changed for its owner since a point: the cost follows the number of outcomes, not the number of
running tasks. Steps the executor has no use for (created, launched, running: Airflow learns a task runs from the
worker itself) are not stamped, so they never write the index: an item enters it once, when it finishes.

Write cost (DynamoDB bills each write by the item's size in 1 KB units, plus every index entry it puts, updates or
moves): the launch request, a few KB with an Airflow 3 workload's token, lives in a side item written once
(``<launch id>#request``, zlib-compressed, in no index) and read only for a relaunch; history entries are compact
and bounded (``item.HISTORY_LIMIT``); so the task item stays under 1 KB.

The stale index (sparse on ``active``, sorted by ``checked_at``, keys only) holds only the launches that wait
WITHOUT an ECS task to find them by and whose next step could be lost: ``release_lease`` with a retry time (a
launch backing off from throttling or capacity: its message comes back after the queue's visibility timeout),
``schedule_relaunch`` (the status handler's relaunch, whose publish could be lost), and the reconciler's ``touch``
of a relaunch it published again. A launch's claim (``create_for_launch``) is not in it: its queue message brings
it back until it launches, fails or dead-letters (the launch DLQ, and Airflow's stuck-in-queued check, cover a
launch whose message is gone). Once an item has a task (``record_launched``, any ECS event) it leaves the index:
ECS lists its task, and the reconciler finds a lost final event from ECS's list of stopped tasks
(``reconciling``). So the common path writes no index entry: request 1 + claim 1 + launch record 1 + final 1
with its change-feed entry 1 = 5 WRU a task (plain RUNNING is not delivered, so not written; ``ecs_state``).
Removing ``active`` where it is absent writes no entry; items the previous version put in the index (every active
item) leave it at their next state change.

Vocabulary only: no boto3, so the stack, the local mode and the tests import it without the data access.
"""

from __future__ import annotations

from binascii import crc32
from typing import Any


class Attr:
    """Attribute names of the task item. Nothing outside the ``tasks`` package spells them."""

    PK = "pk"  # the launch id
    OWNER = "owner"  # the executor instance (or team) whose change feed shows this item
    CHANGED_AT = "changed_at"  # epoch ms of the last write the executor acts on: the change feed's sort key
    REV = "rev"  # write counter: the executor de-duplicates overlapping reads with it
    STATE = "state"
    REASON = "reason"  # why the task failed, was cancelled, or is retrying; shown in the task's log
    ATTEMPT = "attempt"  # 1-based ECS task attempt for this launch
    MAX_ATTEMPTS = "max_attempts"
    LEASE_UNTIL = "lease_until"  # epoch ms until which one launcher holds the right to call RunTask
    TASK_ARN = "task_arn"
    CLUSTER_ARN = "cluster_arn"
    ECS_VERSION = "ecs_version"  # detail.version of the last applied ECS event
    ECS_LAST_STATUS = "ecs_last_status"
    STOP_CODE = "stop_code"
    EXIT_CODE = "exit_code"
    DAG_ID = "dag_id"
    TASK_ID = "task_id"
    RUN_ID = "run_id"
    MAP_INDEX = "map_index"
    TRY_NUMBER = "try_number"
    TEAM = "team"
    # On the side item only (``<launch id>#request``): the launch request JSON, zlib-compressed (Binary), kept so
    # a relaunch needs nothing from the queue.
    REQUEST = "request"
    QUEUED_AT = "queued_at"  # epoch ms: when the executor queued it
    LAUNCHED_AT = "launched_at"  # epoch ms: when RunTask returned the task
    RUNNING_AT = "running_at"  # epoch ms: the first RUNNING event
    FINISHED_AT = "finished_at"  # epoch ms: the terminal write
    CANCEL_REQUESTED = "cancel_requested"
    # For operators: a map of compact entries, one per attempt and state, bounded (item.HISTORY_LIMIT).
    HISTORY = "history"
    EXPIRES_AT = "expires_at"  # epoch seconds: DynamoDB TTL, set on terminal writes (and on the side item)
    # Present only while a launch waits without an ECS task (backing off, relaunched): the sparse stale index.
    ACTIVE = "active"
    # Epoch ms when the launch entered the stale index or the reconciler last checked it: the index's sort key.
    CHECKED_AT = "checked_at"
    # Epoch ms of the reconciler's first DescribeTasks answer MISSING for the task; a found task clears it.
    MISSING_SINCE = "missing_since"
    # Epoch ms when a launch that is backing off (throttling, capacity) comes back to the launcher.
    RETRY_AT = "retry_at"

    # On a task definition registration item only (``task-definition#<family>``): the revision the launchers run,
    # and when a launch last used it (epoch ms; the reconciler deregisters what goes unused).
    TASK_DEFINITION_ARN = "task_definition_arn"
    LAST_USED_AT = "last_used_at"


# The change-feed index: partition by owner, sort by change time.
CHANGE_INDEX = "by_owner_changed"
# Attributes the executor needs from the change feed, projected into the index (not the bulky request).
CHANGE_INDEX_ATTRIBUTES: tuple[str, ...] = (
    Attr.STATE,
    Attr.REV,
    Attr.REASON,
    Attr.ATTEMPT,
    Attr.TASK_ARN,
    Attr.EXIT_CODE,
    Attr.STOP_CODE,
    Attr.ECS_LAST_STATUS,
    Attr.DAG_ID,
    Attr.TASK_ID,
    Attr.RUN_ID,
    Attr.MAP_INDEX,
    Attr.TRY_NUMBER,
    Attr.QUEUED_AT,
    Attr.LAUNCHED_AT,
    Attr.RUNNING_AT,
    Attr.FINISHED_AT,
)

# The stale index: only launches waiting without an ECS task (sparse on ``active``; see the module docstring),
# sorted by when they entered it or the reconciler last checked them. Keys only: the reconciler reads the items
# themselves (BatchGetItem). ``active`` is one of STALE_SHARDS values (from the launch id), so the index's writes
# and reads spread over that many partitions instead of one; readers query every shard.
STALE_INDEX = "by_active_checked"
STALE_SHARDS = 16
ACTIVE_SHARD_VALUES: tuple[str, ...] = tuple(str(i) for i in range(STALE_SHARDS))
# The control plane's heartbeat lives in the table under a key no launch id can take (launch ids have no '#').
HEARTBEAT_KEY = "control-plane#heartbeat"
# The launch request's side item: ``<launch id>#request`` (launch ids have no '#', so it cannot be a task item).
REQUEST_KEY_SUFFIX = "#request"
# A derived task definition's registration item: ``task-definition#<family>``; in no index.
REGISTRATION_KEY_PREFIX = "task-definition#"
# How long a launch request (its command carries the workload's token) is kept for relaunches: until its launch
# can no longer start, its ``launch_deadline`` (the token's task_queued_timeout), plus REQUEST_EXPIRY_MARGIN_SECONDS
# for clock skew and DynamoDB's TTL; a request without a deadline for REQUEST_RETENTION_SECONDS after it was
# queued. Only a launch whose ECS task never started is relaunched, minutes after queueing. Reads treat an
# expired side item as gone (DynamoDB's TTL deletes it later, within days).
REQUEST_EXPIRY_MARGIN_SECONDS = 3600
REQUEST_RETENTION_SECONDS = 24 * 3600

# Finished items are kept this long (DynamoDB TTL), for adoption, operators and late duplicates.
DEFAULT_FINISHED_TTL_SECONDS = 7 * 24 * 3600


def active_shard(launch_id: str) -> str:
    """Return the stale-index shard (the ``active`` value) of a launch: stable, spread evenly."""
    return ACTIVE_SHARD_VALUES[crc32(launch_id.encode()) % STALE_SHARDS]


def request_key(launch_id: str) -> str:
    """Return the key of a launch's request side item."""
    return launch_id + REQUEST_KEY_SUFFIX


def registration_key(family: str) -> str:
    """Return the key of a derived task definition family's registration item."""
    return REGISTRATION_KEY_PREFIX + family


def is_task_key(pk: str) -> bool:
    """Return whether a table key is a task item's (not the heartbeat's or a launch request's side item)."""
    return "#" not in pk


def table_definition(table_name: str) -> dict[str, Any]:
    """Return CreateTable arguments for the tasks table (the stack defines the same keys, indexes and projections)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": Attr.PK, "AttributeType": "S"},
            {"AttributeName": Attr.OWNER, "AttributeType": "S"},
            {"AttributeName": Attr.CHANGED_AT, "AttributeType": "N"},
            {"AttributeName": Attr.ACTIVE, "AttributeType": "S"},
            {"AttributeName": Attr.CHECKED_AT, "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": Attr.PK, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": CHANGE_INDEX,
                "KeySchema": [
                    {"AttributeName": Attr.OWNER, "KeyType": "HASH"},
                    {"AttributeName": Attr.CHANGED_AT, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(CHANGE_INDEX_ATTRIBUTES),
                },
            },
            {
                "IndexName": STALE_INDEX,
                "KeySchema": [
                    {"AttributeName": Attr.ACTIVE, "KeyType": "HASH"},
                    {"AttributeName": Attr.CHECKED_AT, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }
