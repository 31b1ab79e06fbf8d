"""Emulated AWS at the botocore level: the model's latency, quotas and billing on every request of every client.

One ``before-send`` hook, registered first on each client, does for every HTTP attempt (botocore's retries
included): count the request for the calling actor, charge its modelled latency to the actor's simulated clock,
refuse a RunTask with ThrottlingException when a Fargate bucket is empty, then answer it:

- DynamoDB: moto (in-process), with the request units each call is billed computed from item sizes;
- ECS, SQS, EventBridge: small model backends here. moto's ECS allocates an ENI per awsvpc task and scans every
  task on DescribeTasks, and its SQS visibility timeouts run on the wall clock, so neither works at 10,000 tasks
  on simulated time.

The thread CPU spent answering (moto or model) is recorded per actor, so it can be taken out of the executors'
own CPU time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.endpoint
from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber

from harness.aws_shapes import ACCOUNT, REGION, iso, task_state_change
from harness.bench.model import Actor, AwsModel, Sim, TokenBucket

CLUSTER = "airflow"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/airflow-launch"
DLQ_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/airflow-launch-dlq"
SQS_CHUNK = 64 * 1024


class ModelError(Exception):
    """An AWS error answer from a model backend."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------------------------- ECS


class EcsModel:
    """RunTask / DescribeTasks / ListTasks / StopTask over an in-memory task table; transitions come from the
    bench world."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.tasks: dict[str, dict[str, Any]] = {}
        self.on_run: list[Callable[[dict[str, Any]], None]] = []
        self.on_change: list[Callable[[dict[str, Any]], None]] = []

    def run_task(self, params: dict[str, Any]) -> dict[str, Any]:
        now = self.sim.clock()
        task_id = uuid.uuid4().hex
        overrides = params.get("overrides") or {}
        names = [c.get("name", "base") for c in overrides.get("containerOverrides", [])] or ["base"]
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task_id}"
        task: dict[str, Any] = {
            "taskArn": arn,
            "clusterArn": CLUSTER_ARN,
            "taskDefinitionArn": params.get("taskDefinition"),
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "launchType": params.get("launchType", "FARGATE"),
            "group": params.get("group", "family:airflow-worker"),
            "createdAt": now,
            "version": 1,
            "overrides": overrides,
            "containers": [
                {"containerArn": f"{arn}/{name}", "name": name, "lastStatus": "PENDING", "taskArn": arn}
                for name in names
            ],
        }
        if params.get("startedBy"):
            task["startedBy"] = params["startedBy"]
        self.tasks[arn] = task
        for hook in self.on_run:
            hook(task)
        self._changed(task)
        return {"tasks": [task], "failures": []}

    def describe_tasks(self, params: dict[str, Any]) -> dict[str, Any]:
        # AWS limits DescribeTasks to 100 ARNs a call.
        arns = params.get("tasks", [])
        if len(arns) > 100:
            raise ModelError("InvalidParameterException", "Tasks cannot be longer than 100")
        tasks = [self.tasks[a] for a in arns if a in self.tasks]
        failures = [{"arn": a, "reason": "MISSING"} for a in arns if a not in self.tasks]
        return {"tasks": tasks, "failures": failures}

    def list_tasks(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListTasks by ``startedBy`` and ``desiredStatus`` (RUNNING by default), 100 ARNs a page as AWS does."""
        desired = params.get("desiredStatus", "RUNNING")
        started_by = params.get("startedBy")
        arns = [
            arn
            for arn, task in self.tasks.items()
            if task["desiredStatus"] == desired
            and (started_by is None or task.get("startedBy") == started_by)
        ]
        start = int(params.get("nextToken") or 0)
        size = min(100, int(params.get("maxResults") or 100))
        page: dict[str, Any] = {"taskArns": arns[start : start + size]}
        if start + size < len(arns):
            page["nextToken"] = str(start + size)
        return page

    def stop_task(self, params: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(params.get("task", ""))
        if task is None:
            raise ModelError("InvalidParameterException", "The referenced task was not found.")
        self.transition(task["taskArn"], "STOPPED", desired="STOPPED", stop_code="UserInitiated")
        return {"task": task}

    def transition(
        self,
        arn: str,
        last_status: str,
        *,
        desired: str | None = None,
        exit_code: int | None = None,
        stop_code: str | None = None,
        reason: str | None = None,
        quiet: bool = False,
    ) -> None:
        """Move a task on; ``quiet`` skips the event (setup of tasks that were running before the bench)."""
        now = self.sim.clock()
        task = self.tasks[arn]
        task["lastStatus"] = last_status
        task["version"] += 1
        if desired:
            task["desiredStatus"] = desired
        if last_status == "RUNNING" and "startedAt" not in task:
            task["startedAt"] = now
        for container in task["containers"]:
            container["lastStatus"] = "RUNNING" if last_status == "RUNNING" else container["lastStatus"]
            if exit_code is not None:
                container["exitCode"] = exit_code
                container["lastStatus"] = "STOPPED"
        if stop_code:
            task["stopCode"] = stop_code
        if reason:
            task["stoppedReason"] = reason
        if last_status == "STOPPED":
            task["stoppedAt"] = now
        if not quiet:
            self._changed(task)

    def _changed(self, task: dict[str, Any]) -> None:
        for hook in self.on_change:
            hook(task)


def task_state_event(task: dict[str, Any]) -> dict[str, Any]:
    """Return the "ECS Task State Change" event for a modelled task as it is now (its times are simulated)."""
    detail = dict(task)
    for key in ("createdAt", "startedAt", "stoppedAt"):
        if key in detail:
            detail[key] = iso(detail[key])
    detail["containers"] = [dict(c) for c in task["containers"]]
    return task_state_change(detail, at=task.get("stoppedAt") or task.get("startedAt") or task["createdAt"])


# ------------------------------------------------------------------------------------------------------- SQS


@dataclass
class Message:
    message_id: str
    body: str
    visible_at: float
    sent_at: float
    receive_count: int = 0
    handle: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


class SqsQueue:
    """A standard queue on simulated time (visibility, delay, receive counts)."""

    def __init__(self, url: str, visibility_timeout: float) -> None:
        self.url = url
        self.visibility_timeout = visibility_timeout
        self.messages: dict[str, Message] = {}
        self.by_handle: dict[str, str] = {}
        self.on_send: list[Callable[[float], None]] = []

    def send(self, body: str, now: float, attributes: dict[str, Any] | None = None) -> Message:
        message = Message(uuid.uuid4().hex, body, now, now, attributes=attributes or {})
        self.messages[message.message_id] = message
        for hook in self.on_send:
            hook(now)
        return message

    def visible(self, now: float) -> list[Message]:
        return [m for m in self.messages.values() if m.visible_at <= now]

    def next_visible_at(self) -> float | None:
        return min((m.visible_at for m in self.messages.values()), default=None)

    def receive(self, now: float, limit: int) -> list[Message]:
        taken = []
        for message in self.messages.values():
            if message.visible_at <= now:
                message.receive_count += 1
                message.visible_at = now + self.visibility_timeout
                self.by_handle.pop(message.handle, None)
                message.handle = uuid.uuid4().hex
                self.by_handle[message.handle] = message.message_id
                taken.append(message)
                if len(taken) == limit:
                    break
        return taken

    def delete(self, handle: str) -> None:
        message_id = self.by_handle.pop(handle, None)
        if message_id is not None:
            self.messages.pop(message_id, None)

    def change_visibility(self, handle: str, now: float, seconds: float) -> None:
        message_id = self.by_handle.get(handle)
        if message_id is None:
            raise ModelError("ReceiptHandleIsInvalid", "The receipt handle is not valid")
        self.messages[message_id].visible_at = now + seconds
        for hook in self.on_send:
            hook(now + seconds)


class SqsModel:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.queues: dict[str, SqsQueue] = {}

    def create(self, url: str, visibility_timeout: float = 361.0) -> SqsQueue:
        self.queues[url] = SqsQueue(url, visibility_timeout)
        return self.queues[url]

    def _queue(self, params: dict[str, Any]) -> SqsQueue:
        queue = self.queues.get(params.get("QueueUrl", ""))
        if queue is None:
            raise ModelError("AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
        return queue

    def call(self, operation: str, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Answer one request; return (response, payload bytes for the 64 KB billing chunks)."""
        now = self.sim.clock()
        if operation == "GetQueueUrl":
            name = params["QueueName"]
            return {"QueueUrl": next(u for u in self.queues if u.endswith(f"/{name}"))}, 0
        queue = self._queue(params)
        if operation == "SendMessageBatch":
            ok = []
            size = 0
            for entry in params["Entries"]:
                size += len(entry["MessageBody"].encode())
                message = queue.send(entry["MessageBody"], now)
                ok.append({"Id": entry["Id"], "MessageId": message.message_id, "MD5OfMessageBody": ""})
            return {"Successful": ok, "Failed": []}, size
        if operation == "SendMessage":
            message = queue.send(params["MessageBody"], now, params.get("MessageAttributes"))
            return {"MessageId": message.message_id, "MD5OfMessageBody": ""}, len(params["MessageBody"])
        if operation == "ChangeMessageVisibility":
            queue.change_visibility(params["ReceiptHandle"], now, float(params["VisibilityTimeout"]))
            return {}, 0
        if operation == "DeleteMessage":
            queue.delete(params["ReceiptHandle"])
            return {}, 0
        if operation == "DeleteMessageBatch":
            for entry in params["Entries"]:
                queue.delete(entry["ReceiptHandle"])
            return {"Successful": [{"Id": e["Id"]} for e in params["Entries"]], "Failed": []}, 0
        if operation == "GetQueueAttributes":
            return {"Attributes": {"ApproximateNumberOfMessages": str(len(queue.messages))}}, 0
        raise ModelError("InvalidAction", f"the SQS model does not implement {operation}")


# ------------------------------------------------------------------------------------------------ DynamoDB


def _value_size(value: dict[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return max(1, (len(v.lstrip("-").replace(".", "")) + 1) // 2 + 1)
    if kind == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(x) for k, x in v.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(x)) for x in v)
    return len(json.dumps(v))


def item_size(raw: dict[str, Any]) -> int:
    """Return an item's size as DynamoDB bills it (attribute names plus values), from its low-level form."""
    return sum(len(k.encode()) + _value_size(v) for k, v in raw.items())


@dataclass(frozen=True)
class IndexShape:
    keys: tuple[str, ...]
    projected: tuple[str, ...]


class DynamoBilling:
    """Request units a DynamoDB call is billed, from the items moto holds before and after it."""

    def __init__(self, table_name: str, indexes: list[IndexShape], key: str) -> None:
        self.table_name = table_name
        self.indexes = indexes
        self.key = key

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> DynamoBilling:
        key = definition["KeySchema"][0]["AttributeName"]
        indexes = [
            IndexShape(
                tuple(k["AttributeName"] for k in index["KeySchema"]),
                tuple(index["Projection"].get("NonKeyAttributes", [])),
            )
            for index in definition.get("GlobalSecondaryIndexes", [])
        ]
        return cls(definition["TableName"], indexes, key)

    def stored(self, pk: dict[str, Any] | None) -> dict[str, Any] | None:
        """Return the item moto holds for a key (low-level form), or None."""
        if pk is None:
            return None
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = dynamodb_backends[ACCOUNT][REGION].get_table(self.table_name)
        item = table.get_item(DynamoType(pk))
        return item.to_json()["Attributes"] if item is not None else None

    def write_units(self, before: dict[str, Any] | None, after: dict[str, Any] | None, ok: bool) -> float:
        """WRU of a write: the item (1 KB units), and each index entry it puts, updates or deletes (2 if it moves).

        As AWS documents for global secondary indexes: an entry is written when the item enters or leaves the
        index, twice when an index key changes, once when only projected attributes change, and not at all when
        the write changes neither.
        """
        base = after if ok and after is not None else before
        units = float(max(1, math.ceil(item_size(base or {}) / 1024)))
        if not ok:
            return units
        for index in self.indexes:
            was = before is not None and all(k in before for k in index.keys)
            now = after is not None and all(k in after for k in index.keys)
            if not (was or now):
                continue
            shown = after if now else before
            assert shown is not None
            names = (self.key, *index.keys, *index.projected)
            size = item_size({k: v for k, v in shown.items() if k in names})
            writes = 1
            if was and now:
                assert before is not None and after is not None
                # An index entry whose keys change is deleted and put again: billed twice.
                if any(before[k] != after[k] for k in index.keys):
                    writes = 2
                elif all(before.get(k) == after.get(k) for k in index.projected):
                    writes = 0
            units += math.ceil(size / 1024) * writes
        return units


def read_units(items: list[dict[str, Any]], consistent: bool, *, per_item: bool) -> float:
    """RRU: 4 KB units (per item for GetItem/BatchGetItem, summed for Query), halved when eventually consistent."""
    factor = 1.0 if consistent else 0.5
    if per_item:
        return sum(max(1, math.ceil(item_size(i) / 4096)) * factor for i in items) or factor
    return max(1, math.ceil(sum(item_size(i) for i in items) / 4096)) * factor


# --------------------------------------------------------------------------------------------- the emulator


class Emulator:
    """Every client the bench builds comes from here; each request is charged to ``sim.current``."""

    def __init__(self, sim: Sim, model: AwsModel, table_definition: dict[str, Any]) -> None:
        self.sim = sim
        self.model = model
        self.ecs = EcsModel(sim)
        self.sqs = SqsModel(sim)
        self.launch_queue = self.sqs.create(QUEUE_URL)
        self.dead_letter_queue = self.sqs.create(DLQ_URL)
        self.billing = DynamoBilling.from_definition(table_definition)
        self.run_task_calls = TokenBucket(model.run_task_call_burst, model.run_task_calls_per_second)
        self.task_launches = TokenBucket(model.task_launch_burst, model.task_launch_per_second)
        self.charging = True
        self.relaunch_detail_type: str | None = None
        self.custom_events: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def free(self) -> Iterator[None]:
        """Set-up outside the measurement: no latency, no quotas, nothing counted."""
        previous, self.charging = self.charging, False
        try:
            yield
        finally:
            self.charging = previous

    def client(self, service: str) -> Any:
        return self.attach(boto3.client(service, region_name=REGION))

    def lambda_client(self, service: str) -> Any:
        """A client built as the Lambdas build theirs (``aws_clients.lambda_client``: botocore alone, standard
        retries, no client-side validation of what the control plane built), answered here."""
        from ecs_event_executor.control.aws_clients import lambda_client

        return self.attach(lambda_client(service))

    def attach(self, client: Any) -> Any:
        """Answer ``client``'s requests here, and only here.

        botocore emits ``before-send`` to every handler, not only until one answers: moto's stubber (on every
        client created under ``mock_aws``) would answer each request a second time, run each DynamoDB write
        twice and charge that CPU to the caller. It is taken off the client; DynamoDB requests go to it from
        the hook, once.
        """
        client.meta.events.unregister("before-send", botocore_stubber)
        client.meta.events.register_first("before-send", self._before_send)
        return client

    # ----------------------------------------------------------------------------------------- the hook

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse:
        # All of it is the emulator's CPU, the simulated wait's hand-over between threads included: not the caller's.
        actor = self.sim.current
        started = time.thread_time()
        try:
            return self._answer_request(request, event_name, actor)
        finally:
            actor.emulator_cpu += time.thread_time() - started

    def _answer_request(self, request: Any, event_name: str, actor: Actor) -> AWSResponse:
        _event, service, operation = event_name.split(".", 2)
        raw = request.body or b"{}"
        params: dict[str, Any] = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if self.charging:
            actor.requests[f"{service}.{operation}"] += 1
            self.sim.wait(actor, self.model.latency_of(service, operation))
            if service == "ecs" and operation == "RunTask" and not self._may_launch(actor.time):
                actor.throttled += 1
                return _error(request, "ThrottlingException", "Rate exceeded")
        try:
            if service == "dynamodb":
                return self._dynamodb(request, operation, params, actor, event_name)
            return _answer(request, self._model_call(service, operation, params, actor))
        except ModelError as exc:
            return _error(request, exc.code, exc.message)

    def _may_launch(self, now: float) -> bool:
        if self.run_task_calls.available(now) and self.task_launches.available(now):
            self.run_task_calls.take(now)
            self.task_launches.take(now)
            return True
        return False

    def _model_call(
        self, service: str, operation: str, params: dict[str, Any], actor: Actor
    ) -> dict[str, Any]:
        if service == "ecs":
            handler = {
                "RunTask": self.ecs.run_task,
                "DescribeTasks": self.ecs.describe_tasks,
                "ListTasks": self.ecs.list_tasks,
                "StopTask": self.ecs.stop_task,
            }.get(operation)
            if handler is None:
                raise ModelError("InvalidAction", f"the ECS model does not implement {operation}")
            return handler(params)
        if service == "sqs":
            response, size = self.sqs.call(operation, params)
            if self.charging:
                actor.sqs_billed += max(1, math.ceil(size / SQS_CHUNK))
            return response
        if service == "eventbridge" and operation == "PutEvents":
            entries = params.get("Entries", [])
            if self.charging:
                actor.custom_events += sum(
                    max(1, math.ceil(len(json.dumps(e).encode()) / SQS_CHUNK)) for e in entries
                )
            for entry in entries:
                self.custom_events.append(entry)
                if entry.get("DetailType") == self.relaunch_detail_type:
                    # The bus rule sends the relaunch request (the event's detail) to the launch queue.
                    self.launch_queue.send(entry["Detail"], self.sim.clock())
            return {"FailedEntryCount": 0, "Entries": [{"EventId": uuid.uuid4().hex} for _ in entries]}
        raise ModelError("InvalidAction", f"no model for {service}.{operation}")

    def _dynamodb(
        self, request: Any, operation: str, params: dict[str, Any], actor: Actor, event_name: str
    ) -> AWSResponse:
        pk = None
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or params.get("Item") or {}
            pk = key.get(self.billing.key)
        before = self.billing.stored(pk) if pk is not None and self.charging else None
        response = botocore_stubber(event_name, request)
        assert response is not None, f"moto did not answer {operation}"
        if not self.charging:
            return response
        answer = json.loads(response.content or b"{}")
        ok = response.status_code < 300
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            after = self.billing.stored(pk) if ok else before
            actor.wru += self.billing.write_units(before, after, ok)
        elif operation == "Query" and ok:
            actor.rru += read_units(
                answer.get("Items", []), bool(params.get("ConsistentRead")), per_item=False
            )
        elif operation == "GetItem" and ok:
            item = answer.get("Item")
            actor.rru += read_units([item] if item else [], bool(params.get("ConsistentRead")), per_item=True)
        elif operation == "BatchGetItem" and ok:
            for table, items in answer.get("Responses", {}).items():
                consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                actor.rru += read_units(items, consistent, per_item=True)
        return response


def _answer(request: Any, payload: dict[str, Any]) -> AWSResponse:
    body = json.dumps(payload, default=str).encode()
    headers = {"x-amzn-requestid": uuid.uuid4().hex, "content-type": "application/x-amz-json-1.1"}
    return AWSResponse(request.url, 200, headers, MockRawResponse(body))


def _error(request: Any, code: str, message: str) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {"x-amzn-requestid": uuid.uuid4().hex, "content-type": "application/x-amz-json-1.1"}
    return AWSResponse(request.url, 400, headers, MockRawResponse(body))


class _SimulatedSleep:
    """Stands in for the ``time`` module inside botocore.endpoint: retry back-off sleeps on simulated time."""

    def __init__(self, sim: Sim) -> None:
        self._sim = sim

    def sleep(self, seconds: float) -> None:
        self._sim.wait(self._sim.current, seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextlib.contextmanager
def simulated_retry_sleeps(sim: Sim) -> Iterator[None]:
    """Charge botocore's retry back-off (legacy mode: up to 4 retries on throttling) to the caller's clock."""
    original = botocore.endpoint.time
    botocore.endpoint.time = _SimulatedSleep(sim)
    try:
        yield
    finally:
        botocore.endpoint.time = original


@contextlib.contextmanager
def fast_moto_projection() -> Iterator[None]:
    """Make moto's item projection linear (same result): it rebuilds the whole item once per projected name.

    Only top-level attribute names (what the change index projects) take the short path; anything nested goes
    to moto's own code. This changes how long the emulator takes, never what it answers.
    """
    from moto.dynamodb.models.dynamo_type import Item

    original = Item.project

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        if any(len(expr) != 1 for expr in projection_expressions):
            return original(self, projection_expressions)
        names = [expr[0] for expr in projection_expressions]
        attrs = {name: self.attrs[name].to_json() for name in names if name in self.attrs}
        return Item(hash_key=self.hash_key, range_key=self.range_key, attrs=attrs)

    Item.project = project  # type: ignore[method-assign]
    try:
        with _plain_dynamodb_responses(), _narrow_index_queries():
            yield
    finally:
        Item.project = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _narrow_index_queries() -> Iterator[None]:
    """Hand moto's index Query only the items its key condition can match (same answer, less work).

    moto sorts and measures every item of the table before applying a Query's key condition, so each change-feed
    read costs time in proportion to the whole table: quadratic over a run of 1,000 tasks. The items are filtered
    here with moto's own comparisons first, in storage order (moto's ``all_items`` sorts the whole table by key,
    seconds per Query at 50,000 items; the index Query sorts what matches by the index's keys and the table's
    key anyway, so the answer and its order are the same); moto then applies the same conditions to what is left.
    """
    import inspect

    from moto.dynamodb.models.table import Table

    original = Table.query
    signature = inspect.signature(original)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        index_name = bound.get("index_name")
        hash_conditions = bound.get("hash_key_conditions") or []
        range_conditions = bound.get("range_key_conditions") or []
        if not index_name or not hash_conditions or len(range_conditions) > 1:
            return original(self, *args, **kwargs)

        def every_item() -> Iterator[Any]:
            for stored in self.items.values():
                yield from stored.values() if self.range_key_attr else (stored,)

        def matching() -> list[Any]:
            kept = []
            for item in every_item():
                if not all(_equal(item.attrs.get(name), value) for name, value in hash_conditions):
                    continue
                if range_conditions:
                    name, comparison, values = range_conditions[0]
                    value = item.attrs.get(name)
                    if value is None or not value.compare(comparison, values):
                        continue
                kept.append(item)
            return kept

        self.all_items = matching
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    def _equal(found: Any, expected: Any) -> bool:
        return found is not None and bool(found == expected)

    Table.query = query  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.query = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _plain_dynamodb_responses() -> Iterator[None]:
    """Serialize moto's DynamoDB answers with json.dumps: they are already in wire form (JSON protocol).

    moto's model-driven serializer walks every attribute value against the service model, which takes tens of
    milliseconds per Query of large items. Anything json.dumps cannot write goes to moto's serializer.
    """
    from moto.core.responses import ActionResult
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    original = ActionResult.execute_result
    # moto re-measures the whole item on every attribute it sets (to enforce 400 KB): quadratic in the
    # attribute count. Task items are a few KB, so the check is skipped here.
    original_setitem = LimitedSizeDict.__setitem__
    LimitedSizeDict.__setitem__ = dict.__setitem__  # type: ignore[method-assign]

    def execute_result(self: Any, context: Any) -> Any:
        result = self.result
        if context.operation_model.service_model.service_name == "dynamodb" and isinstance(result, dict):
            try:
                body = json.dumps(result)
            except TypeError:
                return original(self, context)
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return original(self, context)

    ActionResult.execute_result = execute_result  # type: ignore[method-assign]
    try:
        yield
    finally:
        ActionResult.execute_result = original  # type: ignore[method-assign]
        LimitedSizeDict.__setitem__ = original_setitem  # type: ignore[method-assign]
