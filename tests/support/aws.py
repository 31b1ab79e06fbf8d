"""Test harness around moto: resources, Lambda events, request counting and RunTask clientToken semantics.

The shapes of Lambda's events and context are ``harness.aws_shapes``, shared with the local mode and the bench.

moto ignores RunTask's clientToken. AWS documents that the same token with the same parameters returns the task
the first call started, and the same token with different parameters is refused with ``ConflictException``
naming that task in ``resourceIds``; ``ClientTokenSemantics`` emulates exactly that at the botocore level, in
tests only. moto also accepts a launch type together with a capacity provider strategy, which ECS refuses;
``EcsLaunchRules`` emulates the refusal.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.tasks.schema import table_definition

from harness.aws_shapes import LambdaContext, apply_input_path, received_sqs_event

REGION = "us-east-1"
CONTAINER = "base"


@dataclass
class EcsSetup:
    cluster: str
    cluster_arn: str
    task_definition: str
    subnets: list[str]
    security_groups: list[str]


def create_ecs(container_name: str = CONTAINER) -> EcsSetup:
    """Create a VPC (DNS hostnames on), subnet, security group, cluster and task definition in moto."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="airflow-tasks", Description="tasks", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", region_name=REGION)
    cluster_arn = ecs.create_cluster(clusterName="airflow")["cluster"]["clusterArn"]
    td = ecs.register_task_definition(
        family="airflow-worker",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": container_name, "image": "apache/airflow:3.3.2", "memory": 512, "essential": True}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return EcsSetup("airflow", cluster_arn, td, [subnet], [sg])


def create_table(name: str = "airflow-tasks") -> str:
    boto3.client("dynamodb", region_name=REGION).create_table(**table_definition(name))
    return name


def create_queues(name: str = "airflow-launch") -> tuple[str, str, str]:
    """Create the launch queue and its DLQ; return (queue url, queue arn, dlq url)."""
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "50"})},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq


def launcher_environment(
    ecs: EcsSetup, table: str, queue_url: str, dlq_url: str, **extra: str
) -> dict[str, str]:
    env = {
        env_vars.TASKS_TABLE_NAME: table,
        env_vars.CLUSTER: ecs.cluster,
        env_vars.TASK_DEFINITION: ecs.task_definition,
        env_vars.CONTAINER_NAME: CONTAINER,
        env_vars.LAUNCH_TYPE: "FARGATE",
        env_vars.SUBNETS: ",".join(ecs.subnets),
        env_vars.SECURITY_GROUPS: ",".join(ecs.security_groups),
        env_vars.ASSIGN_PUBLIC_IP: "false",
        env_vars.LAUNCH_QUEUE_URL: queue_url,
        env_vars.DEAD_LETTER_QUEUE_URL: dlq_url,
        env_vars.POWERTOOLS_METRICS_NAMESPACE: "Tests",
    }
    env.update(extra)
    return env


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Return a Lambda SQS event for messages received from SQS (ReceiveMessage output)."""
    return received_sqs_event(messages, queue_arn)


def body_event(bodies: list[str], queue_arn: str, receive_count: int = 1) -> dict[str, Any]:
    """Return a Lambda SQS event for raw bodies (not received from a queue)."""
    return sqs_event(
        [
            {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": str(uuid.uuid4()),
                "Body": b,
                "Attributes": {"ApproximateReceiveCount": str(receive_count)},
            }
            for b in bodies
        ],
        queue_arn,
    )


# The tests' name for the one Lambda context stand-in (defaults: function "test", 256 MB, 300 s).
LambdaContextStub = LambdaContext


@dataclass
class CallCounter:
    """Count API calls a botocore client makes, by operation name."""

    calls: Counter[str] = field(default_factory=Counter)

    def attach(self, client: Any) -> CallCounter:
        client.meta.events.register("provide-client-params", self._count)
        return self

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@contextlib.contextmanager
def atomic_moto_requests() -> Iterator[None]:
    """Answer one in-process moto request at a time, as AWS applies each request atomically.

    moto's backends check a condition and then write without a lock, so two threads (the launcher applies a
    batch's messages concurrently) could both pass the same ConditionExpression; DynamoDB never lets them.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__
    lock = threading.RLock()

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


class ClientTokenSemantics:
    """Emulate RunTask's documented idempotency on a moto-backed ECS client (moto ignores clientToken).

    Concurrent calls with one token get one task: a call whose token is in flight waits for the first to answer.
    """

    def __init__(self) -> None:
        self.responses: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.replayed = 0
        self.conflicts = 0
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str], threading.Event] = {}

    def attach(self, client: Any) -> ClientTokenSemantics:
        client.meta.events.register("before-call.ecs.RunTask", self._before)
        client.meta.events.register("after-call.ecs.RunTask", self._after)
        client.meta.events.register("after-call-error.ecs.RunTask", self._after_error)
        return self

    @staticmethod
    def _key(request_dict: dict[str, Any]) -> tuple[tuple[str, str] | None, str]:
        # before-call and after-call see the serialized request; ECS speaks JSON, so the body is the parameters.
        params = json.loads(request_dict["body"] or b"{}")
        token = params.get("clientToken")
        fingerprint = json.dumps(params, sort_keys=True)
        return ((params.get("cluster", "default"), token) if token else None), fingerprint

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        key, fingerprint = self._key(params)
        context["client_token_key"] = (key, fingerprint)
        if not key:
            return None
        while True:
            with self._lock:
                if key in self.responses:
                    first_fingerprint, parsed = self.responses[key]
                    if first_fingerprint != fingerprint:
                        self.conflicts += 1
                        task_arn = parsed["tasks"][0]["taskArn"]
                        return _ecs_error(
                            "ConflictException",
                            "The specified client token has already been used with different parameters",
                            resourceIds=[task_arn],
                        )
                    self.replayed += 1
                    return AWSResponse("https://ecs.amazonaws.com/", 200, {}, None), parsed
                running = self._in_flight.get(key)
                if running is None:
                    self._in_flight[key] = threading.Event()
                    return None
            running.wait()

    def _done(self, context: dict[str, Any], parsed: dict[str, Any] | None) -> None:
        key, fingerprint = context.get("client_token_key", (None, ""))
        if not key:
            return
        with self._lock:
            if parsed is not None and parsed.get("tasks"):
                self.responses.setdefault(key, (fingerprint, parsed))
            running = self._in_flight.pop(key, None)
        if running is not None:
            running.set()

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self._done(context, parsed)

    def _after_error(self, context: dict[str, Any], **_: Any) -> None:
        self._done(context, None)


def _ecs_error(code: str, message: str, **fields: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """Return what a before-call hook answers for an ECS error: botocore raises it as the modeled exception."""
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
        **fields,
    }
    return AWSResponse("https://ecs.amazonaws.com/", 400, {}, None), parsed


class EcsLaunchRules:
    """Refuse RunTask with both ``launchType`` and ``capacityProviderStrategy``, as ECS does (moto accepts it)."""

    def attach(self, client: Any) -> EcsLaunchRules:
        client.meta.events.register("before-call.ecs.RunTask", self._check)
        return self

    @staticmethod
    def _check(params: dict[str, Any], **_: Any) -> Any:
        sent = json.loads(params["body"] or b"{}")
        if sent.get("launchType") and sent.get("capacityProviderStrategy"):
            return _ecs_error(
                "InvalidParameterException",
                "Specifying both a launch type and capacity provider strategy is not supported. Remove one "
                "and try again.",
            )
        return None


def apply_input_path_detail(body: str) -> str:
    """Return what EventBridge delivers for a target with InputPath "$.detail".

    moto ignores InputPath on SQS targets and delivers the whole event; AWS delivers only ``detail``.
    """
    event = json.loads(body)
    return apply_input_path(body, "$.detail") if isinstance(event, dict) and "detail-type" in event else body


class SqsBatchLimit:
    """Refuse a SendMessageBatch whose messages together exceed ``max_bytes`` with ``BatchRequestTooLong``, as SQS
    does for a queue whose MaximumMessageSize is that (moto checks only its own 1 MiB)."""

    def __init__(self, max_bytes: int = 262_144) -> None:
        self.max_bytes = max_bytes
        self.refused = 0

    def attach(self, client: Any) -> SqsBatchLimit:
        client.meta.events.register("provide-client-params.sqs.SendMessageBatch", self._check)
        return self

    def _check(self, params: dict[str, Any], **_: Any) -> None:
        total = sum(len(entry["MessageBody"].encode()) for entry in params.get("Entries", []))
        if total > self.max_bytes:
            from botocore.exceptions import ClientError

            self.refused += 1
            raise ClientError(
                {
                    "Error": {
                        "Code": "AWS.SimpleQueueService.BatchRequestTooLong",
                        "Message": f"Batch requests cannot be longer than {self.max_bytes} bytes.",
                        "SenderFault": True,
                    },
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "SendMessageBatch",
            )


@dataclass
class EventuallyConsistentDescribeTasks:
    """Emulate DescribeTasks' documented eventual consistency right after RunTask, on a moto-backed ECS client.

    AWS: "the Amazon ECS API follows an eventual consistency model"; a task just started may not be visible to
    DescribeTasks yet, which then lists it under ``failures`` with reason ``MISSING``. Here each task's first
    ``misses`` answers are that failure (moto always knows its tasks).
    """

    misses: int = 1
    answered: Counter[str] = field(default_factory=Counter)
    served: int = 0

    def attach(self, client: Any) -> EventuallyConsistentDescribeTasks:
        client.meta.events.register("after-call.ecs.DescribeTasks", self._rewrite)
        return self

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        visible = []
        for task in parsed.get("tasks", []):
            arn = task["taskArn"]
            if self.answered[arn] < self.misses:
                self.answered[arn] += 1
                self.served += 1
                parsed.setdefault("failures", []).append({"arn": arn, "reason": "MISSING"})
            else:
                visible.append(task)
        parsed["tasks"] = visible
