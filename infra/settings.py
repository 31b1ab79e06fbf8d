"""Deployment settings: read once from the ``ecsEventExecutor`` key of the CDK context (``cdk.json``).

Every value is validated here, before any construct is built, so a wrong setting fails ``cdk synth`` with a
message that names it (``ecsEventExecutor.launcherMaxConcurrency: ...``). The README's settings reference
documents each key; the defaults in ``cdk.json`` build a complete stack with a new VPC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ecs_event_executor.control.run_task import ExecutorConfigError, validate_executor_config

CONTEXT_KEY = "ecsEventExecutor"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Fargate's valid CPU units and, for each, the memory range (MiB) and step it accepts.
FARGATE_MEMORY: Mapping[int, tuple[int, int, int]] = {
    256: (512, 2048, 512),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}
# SQS keeps a message at most 14 days; the launch queue keeps it for the retry horizon plus this margin.
QUEUE_RETENTION_MARGIN_SECONDS = 3600
MAX_QUEUE_RETENTION_SECONDS = 14 * 24 * 3600
# Each launcher's share of the RunTask rate must let it launch a batch of 10 well inside its timeout.
MIN_LAUNCHER_RUN_TASK_RATE = 0.5
# The SQS event source's MaximumConcurrency must be in this range.
MIN_ESM_CONCURRENCY, MAX_ESM_CONCURRENCY = 2, 1000
# DescribeTasks shows a stopped task for about an hour after it stops, then ECS forgets it. An active item the
# reconciler checked is checked again at most stale-after + one period later; keeping that within 40 minutes leaves
# 20 for a failed or throttled pass, so a task whose events were lost is still found with its exit code.
MAX_RECONCILE_WINDOW_SECONDS = 2400

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
_AZ = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_VPC = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SG = re.compile(r"^sg-[0-9a-f]{8,17}$")
_CLUSTER_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:cluster/(?P<name>[A-Za-z0-9_-]{1,255})$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_TASK_DEF_ARN = re.compile(
    r"^(?P<family_arn>arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-definition/[A-Za-z0-9_-]{1,255}):\d+$"
)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_LOG_GROUP = re.compile(r"^[\w#/.-]{1,512}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTAINER = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_CAPACITY_PROVIDER = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class SettingsError(ValueError):
    """A deployment setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    """The validated deployment settings. Field docs are in the README's settings reference."""

    name_prefix: str = "airflow-ecs"
    account: str | None = None
    region: str | None = None
    availability_zones: tuple[str, ...] = ()
    # Network: a new VPC when vpc_id is None.
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    nat_gateways: int = 0
    assign_public_ip: bool = True
    vpc_flow_logs: bool = True
    # Compute: a new cluster when cluster is None (a name or an ARN otherwise).
    cluster: str | None = None
    task_definition_arn: str | None = None
    task_role_arn: str | None = None
    execution_role_arn: str | None = None
    log_group_name: str | None = None
    image: str = "apache/airflow:3.3.2"
    cpu: int = 1024
    memory: int = 2048
    container_name: str = "base"
    log_stream_prefix: str = "airflow"
    execution_api_server_url: str = ""
    launch_type: str | None = "FARGATE"
    capacity_provider_strategy: tuple[Mapping[str, Any], ...] = ()
    platform_version: str | None = "LATEST"
    run_task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Control plane.
    launcher_max_concurrency: int = 5
    # The account's RunTask rate in this region (Fargate: 20 calls per second); the launchers share it.
    run_task_calls_per_second: int = 20
    status_reserved_concurrency: int | None = None
    retry_horizon_seconds: int = 3600
    finished_item_ttl_days: int = 7
    log_retention_days: int = 30
    alarm_email: str | None = None
    alarm_topic_arn: str | None = None
    # Reconciler: how often it runs, and how long an active item may go unchanged before it asks ECS.
    reconcile_every_minutes: int = 5
    reconcile_stale_after_seconds: int = 600
    # Publish routine notifications (task launched, task succeeded) to the project bus; failures always are.
    publish_all_events: bool = False

    @property
    def new_vpc(self) -> bool:
        return self.vpc_id is None

    @property
    def new_cluster(self) -> bool:
        return self.cluster is None

    @property
    def new_task_definition(self) -> bool:
        return self.task_definition_arn is None

    @property
    def task_definition_family_arn(self) -> str | None:
        """Return the existing task definition's ARN without its revision (for IAM: ``<family-arn>:*``)."""
        if self.task_definition_arn is None:
            return None
        match = _TASK_DEF_ARN.match(self.task_definition_arn)
        assert match is not None  # validated in load_settings
        return match.group("family_arn")

    @property
    def finished_ttl_seconds(self) -> int:
        return self.finished_item_ttl_days * 24 * 3600

    @property
    def queue_retention_seconds(self) -> int:
        """Keep a launch message for the retry horizon plus a margin; SQS caps retention at 14 days."""
        return min(self.retry_horizon_seconds + QUEUE_RETENTION_MARGIN_SECONDS, MAX_QUEUE_RETENTION_SECONDS)

    @property
    def uses_fargate(self) -> bool:
        if self.capacity_provider_strategy:
            return any(
                str(e["capacityProvider"]).startswith("FARGATE") for e in self.capacity_provider_strategy
            )
        return self.launch_type == "FARGATE"


_FIELDS: Mapping[str, str] = {
    "namePrefix": "name_prefix",
    "account": "account",
    "region": "region",
    "availabilityZones": "availability_zones",
    "vpcId": "vpc_id",
    "subnetIds": "subnet_ids",
    "securityGroupIds": "security_group_ids",
    "natGateways": "nat_gateways",
    "assignPublicIp": "assign_public_ip",
    "vpcFlowLogs": "vpc_flow_logs",
    "cluster": "cluster",
    "taskDefinitionArn": "task_definition_arn",
    "taskRoleArn": "task_role_arn",
    "executionRoleArn": "execution_role_arn",
    "logGroupName": "log_group_name",
    "image": "image",
    "cpu": "cpu",
    "memory": "memory",
    "containerName": "container_name",
    "logStreamPrefix": "log_stream_prefix",
    "executionApiServerUrl": "execution_api_server_url",
    "launchType": "launch_type",
    "capacityProviderStrategy": "capacity_provider_strategy",
    "platformVersion": "platform_version",
    "runTaskKwargs": "run_task_kwargs",
    "launcherMaxConcurrency": "launcher_max_concurrency",
    "runTaskCallsPerSecond": "run_task_calls_per_second",
    "statusReservedConcurrency": "status_reserved_concurrency",
    "retryHorizonSeconds": "retry_horizon_seconds",
    "finishedItemTtlDays": "finished_item_ttl_days",
    "logRetentionDays": "log_retention_days",
    "alarmEmail": "alarm_email",
    "alarmTopicArn": "alarm_topic_arn",
    "reconcileEveryMinutes": "reconcile_every_minutes",
    "reconcileStaleAfterSeconds": "reconcile_stale_after_seconds",
    "publishAllEvents": "publish_all_events",
}


class _Reader:
    """Typed access to the raw context mapping; every error names ``ecsEventExecutor.<key>``."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @staticmethod
    def error(key: str, problem: str) -> SettingsError:
        return SettingsError(f"{CONTEXT_KEY}.{key}: {problem}")

    def present(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def string(
        self, key: str, default: str | None, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> str | None:
        value = self.raw.get(key, default)
        if value is None or value == "":
            return None if default is None else default
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {json.dumps(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"{value!r} is not valid{': ' + hint if hint else ''}")
        return value

    def integer(self, key: str, default: int | None, low: int, high: int) -> int | None:
        value = self.raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {json.dumps(value)}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {json.dumps(value)}")
        return value

    def strings(self, key: str, pattern: re.Pattern[str], hint: str) -> tuple[str, ...]:
        value = self.raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {json.dumps(value)}")
        for v in value:
            if not pattern.match(v):
                raise self.error(key, f"{v!r} is not valid: {hint}")
        if len(set(value)) != len(value):
            raise self.error(key, "lists the same value twice")
        return tuple(value)


def load_settings(context: Mapping[str, Any] | None) -> Settings:
    """Validate the ``ecsEventExecutor`` context value and return the settings; raise SettingsError naming the key."""
    raw: Mapping[str, Any] = context or {}
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{CONTEXT_KEY}: expected an object, got {json.dumps(raw)}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise SettingsError(
            f"{CONTEXT_KEY}.{unknown[0]}: unknown setting; known settings: {', '.join(sorted(_FIELDS))}"
        )
    r = _Reader(raw)
    d = Settings()

    name_prefix = r.string(
        "namePrefix", d.name_prefix, _PREFIX, "2-24 lowercase letters, digits or '-', starting with a letter"
    )
    account = r.string("account", None, _ACCOUNT, "a 12-digit AWS account id")
    region = r.string("region", None, _REGION, "an AWS region such as eu-west-1")
    azs = r.strings("availabilityZones", _AZ, "an availability zone name such as eu-west-1a")

    vpc_id = r.string("vpcId", None, _VPC, "a VPC id such as vpc-0123456789abcdef0")
    subnet_ids = r.strings("subnetIds", _SUBNET, "a subnet id such as subnet-0123456789abcdef0")
    security_group_ids = r.strings(
        "securityGroupIds", _SG, "a security group id such as sg-0123456789abcdef0"
    )
    nat_gateways = r.integer("natGateways", d.nat_gateways, 0, 2)
    assert nat_gateways is not None
    if vpc_id is None:
        if subnet_ids or security_group_ids:
            raise r.error(
                "subnetIds" if subnet_ids else "securityGroupIds",
                "needs vpcId (the existing VPC they belong to)",
            )
        if region is not None and len(azs) < 2:
            raise r.error(
                "availabilityZones",
                "name two zones of the region when region is set, so synth needs no AZ lookup (offline, no credentials)",
            )
    else:
        if not subnet_ids:
            raise r.error("subnetIds", "an existing VPC (vpcId) needs the subnets the tasks run in")
        if not security_group_ids:
            raise r.error(
                "securityGroupIds", "an existing VPC (vpcId) needs the security groups of the tasks"
            )
        if nat_gateways:
            raise r.error("natGateways", "only applies to a new VPC; set it to 0 when vpcId is set")
    if azs and region is not None and not all(az.startswith(region) for az in azs):
        raise r.error("availabilityZones", f"every zone must be in region {region}")
    # Without NAT, tasks in the new VPC's public subnets need a public IP to pull images and reach AWS APIs.
    assign_public_ip = r.boolean("assignPublicIp", vpc_id is None and nat_gateways == 0)
    if vpc_id is None and nat_gateways == 0 and not assign_public_ip:
        raise r.error("assignPublicIp", "must be true for a new VPC without NAT gateways (natGateways: 0)")

    cluster = r.string("cluster", None)
    if cluster is not None and not (_CLUSTER_ARN.match(cluster) or _CLUSTER_NAME.match(cluster)):
        raise r.error("cluster", f"{cluster!r} is neither an ECS cluster name nor a cluster ARN")

    task_definition_arn = r.string(
        "taskDefinitionArn",
        None,
        _TASK_DEF_ARN,
        "an ECS task definition ARN with its revision (...:task-definition/family:3)",
    )
    role_hint = "an IAM role ARN"
    task_role_arn = r.string("taskRoleArn", None, _ROLE_ARN, role_hint)
    execution_role_arn = r.string("executionRoleArn", None, _ROLE_ARN, role_hint)
    log_group_name = r.string("logGroupName", None, _LOG_GROUP, "a CloudWatch Logs group name")
    if task_definition_arn is not None:
        if log_group_name is None:
            raise r.error(
                "logGroupName", "an existing task definition needs the awslogs group its container logs to"
            )
    else:
        for key in ("taskRoleArn", "executionRoleArn", "logGroupName"):
            if r.present(key):
                raise r.error(key, "only applies to an existing task definition (set taskDefinitionArn)")
    image = r.string("image", d.image)
    assert image is not None
    cpu = r.integer("cpu", d.cpu, 256, 16384)
    memory = r.integer("memory", d.memory, 512, 122880)
    assert cpu is not None and memory is not None
    if task_definition_arn is None:
        if cpu not in FARGATE_MEMORY:
            raise r.error(
                "cpu", f"Fargate accepts {', '.join(map(str, FARGATE_MEMORY))} CPU units, got {cpu}"
            )
        low, high, step = FARGATE_MEMORY[cpu]
        if not (low <= memory <= high and memory % step == 0):
            raise r.error(
                "memory", f"with cpu {cpu}, Fargate accepts {low}-{high} MiB in steps of {step}, got {memory}"
            )
    container_name = r.string("containerName", d.container_name, _CONTAINER, "letters, digits, '-' or '_'")
    log_stream_prefix = r.string(
        "logStreamPrefix", d.log_stream_prefix, _CONTAINER, "letters, digits, '-' or '_'"
    )
    url = r.string(
        "executionApiServerUrl", "", _URL, "an http(s) URL such as https://airflow.example.com/execution/"
    )
    assert container_name is not None and log_stream_prefix is not None and url is not None

    launch_type, strategy = _launch(r)
    custom_providers = [
        e["capacityProvider"] for e in strategy if not str(e["capacityProvider"]).startswith("FARGATE")
    ]
    if cluster is None and (custom_providers or launch_type in ("EC2", "EXTERNAL")):
        key = "capacityProviderStrategy" if custom_providers else "launchType"
        raise r.error(
            key,
            "EC2 and external capacity need an existing cluster (set cluster); a new cluster has Fargate only",
        )
    if task_definition_arn is None and (custom_providers or launch_type in ("EC2", "EXTERNAL")):
        key = "capacityProviderStrategy" if custom_providers else "launchType"
        raise r.error(
            key, "the task definition this stack creates runs on Fargate only; for EC2 set taskDefinitionArn"
        )
    platform_version = r.string(
        "platformVersion", d.platform_version, re.compile(r"^(LATEST|\d+\.\d+\.\d+)$"), "LATEST or 1.4.0"
    )
    run_task_kwargs = raw.get("runTaskKwargs") or {}
    try:
        validate_executor_config(run_task_kwargs, container_name=container_name)
    except ExecutorConfigError as exc:
        raise r.error("runTaskKwargs", str(exc).replace("executor_config", "runTaskKwargs")) from exc

    launcher_max_concurrency = r.integer(
        "launcherMaxConcurrency", d.launcher_max_concurrency, MIN_ESM_CONCURRENCY, MAX_ESM_CONCURRENCY
    )
    run_task_rate = r.integer("runTaskCallsPerSecond", d.run_task_calls_per_second, 1, 1000)
    assert run_task_rate is not None and launcher_max_concurrency is not None
    if run_task_rate / launcher_max_concurrency < MIN_LAUNCHER_RUN_TASK_RATE:
        raise r.error(
            "runTaskCallsPerSecond",
            f"{run_task_rate} calls/s shared by launcherMaxConcurrency={launcher_max_concurrency} launchers is "
            f"{run_task_rate / launcher_max_concurrency:g}/s each; each needs at least "
            f"{MIN_LAUNCHER_RUN_TASK_RATE:g}/s to launch a batch of 10 within its timeout (lower "
            "launcherMaxConcurrency)",
        )
    # At least 2: it also caps the status queue's event source, whose maximum concurrency is 2 or more.
    status_reserved = r.integer("statusReservedConcurrency", None, 2, 1000)
    retry_horizon = r.integer(
        "retryHorizonSeconds",
        d.retry_horizon_seconds,
        60,
        MAX_QUEUE_RETENTION_SECONDS - QUEUE_RETENTION_MARGIN_SECONDS,
    )
    ttl_days = r.integer("finishedItemTtlDays", d.finished_item_ttl_days, 1, 365)
    retention = r.integer("logRetentionDays", d.log_retention_days, 1, 3653)
    if retention not in LOG_RETENTION_DAYS:
        raise r.error(
            "logRetentionDays",
            f"CloudWatch Logs accepts {', '.join(map(str, LOG_RETENTION_DAYS))}, got {retention}",
        )
    alarm_email = r.string("alarmEmail", None, _EMAIL, "an email address")
    alarm_topic_arn = r.string("alarmTopicArn", None, _TOPIC_ARN, "an SNS topic ARN")
    if alarm_email and alarm_topic_arn:
        raise r.error("alarmEmail", "set alarmEmail (a new topic) or alarmTopicArn (your topic), not both")
    assert launcher_max_concurrency is not None and retry_horizon is not None and ttl_days is not None
    reconcile_every, stale_after = _reconcile(r, d)

    return Settings(
        name_prefix=name_prefix or d.name_prefix,
        account=account,
        region=region,
        availability_zones=azs,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        security_group_ids=security_group_ids,
        nat_gateways=nat_gateways,
        assign_public_ip=assign_public_ip,
        vpc_flow_logs=r.boolean("vpcFlowLogs", d.vpc_flow_logs),
        cluster=cluster,
        task_definition_arn=task_definition_arn,
        task_role_arn=task_role_arn,
        execution_role_arn=execution_role_arn,
        log_group_name=log_group_name,
        image=image,
        cpu=cpu,
        memory=memory,
        container_name=container_name,
        log_stream_prefix=log_stream_prefix,
        execution_api_server_url=url,
        launch_type=launch_type,
        capacity_provider_strategy=strategy,
        platform_version=platform_version,
        run_task_kwargs=dict(run_task_kwargs),
        launcher_max_concurrency=launcher_max_concurrency,
        run_task_calls_per_second=run_task_rate,
        status_reserved_concurrency=status_reserved,
        retry_horizon_seconds=retry_horizon,
        finished_item_ttl_days=ttl_days,
        log_retention_days=retention or d.log_retention_days,
        alarm_email=alarm_email,
        alarm_topic_arn=alarm_topic_arn,
        reconcile_every_minutes=reconcile_every,
        reconcile_stale_after_seconds=stale_after,
        publish_all_events=r.boolean("publishAllEvents", d.publish_all_events),
    )


def _reconcile(r: _Reader, d: Settings) -> tuple[int, int]:
    """Read reconcileEveryMinutes / reconcileStaleAfterSeconds: together well inside ECS's memory of stopped tasks."""
    every = r.integer("reconcileEveryMinutes", d.reconcile_every_minutes, 1, 30)
    stale_after = r.integer(
        "reconcileStaleAfterSeconds", d.reconcile_stale_after_seconds, 60, MAX_RECONCILE_WINDOW_SECONDS - 60
    )
    assert every is not None and stale_after is not None
    window = stale_after + every * 60
    if window > MAX_RECONCILE_WINDOW_SECONDS:
        raise r.error(
            "reconcileStaleAfterSeconds",
            f"{stale_after} s plus reconcileEveryMinutes ({every} min) is {window} s; keep the sum within "
            f"{MAX_RECONCILE_WINDOW_SECONDS} s, well inside the hour ECS keeps stopped tasks (DescribeTasks)",
        )
    return every, stale_after


def _launch(r: _Reader) -> tuple[str | None, tuple[Mapping[str, Any], ...]]:
    """Read launchType / capacityProviderStrategy: exactly one of them."""
    raw_strategy = r.raw.get("capacityProviderStrategy") or []
    launch_type = r.string("launchType", None if raw_strategy else "FARGATE")
    if launch_type is not None and raw_strategy:
        raise r.error(
            "launchType",
            "launchType and capacityProviderStrategy are mutually exclusive; set launchType to null",
        )
    if launch_type is not None and launch_type not in ("FARGATE", "EC2", "EXTERNAL"):
        raise r.error("launchType", f"must be FARGATE, EC2 or EXTERNAL, got {launch_type!r}")
    if not isinstance(raw_strategy, list):
        raise r.error("capacityProviderStrategy", f"expected a list, got {json.dumps(raw_strategy)}")
    strategy: list[Mapping[str, Any]] = []
    for i, entry in enumerate(raw_strategy):
        key = f"capacityProviderStrategy[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("capacityProvider"), str):
            raise r.error(key, 'expected {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}')
        if not _CAPACITY_PROVIDER.match(entry["capacityProvider"]):
            raise r.error(
                f"{key}.capacityProvider", f"{entry['capacityProvider']!r} is not a capacity provider name"
            )
        extra = sorted(set(entry) - {"capacityProvider", "weight", "base"})
        if extra:
            raise r.error(f"{key}.{extra[0]}", "unknown field; allowed: capacityProvider, weight, base")
        for num, high in (("weight", 1000), ("base", 100000)):
            value = entry.get(num, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise r.error(
                    f"{key}.{num}", f"must be an integer between 0 and {high}, got {json.dumps(value)}"
                )
        strategy.append(dict(entry))
    if strategy and not any(e.get("weight", 0) > 0 for e in strategy):
        raise r.error("capacityProviderStrategy", "at least one provider needs a weight above 0")
    return launch_type, tuple(strategy)
