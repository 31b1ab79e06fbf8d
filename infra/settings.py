"""Deployment settings: a pydantic model of the ``ecsEventExecutor`` object of the CDK context (``cdk.json``).

Every value is validated here, before any construct is built, so a wrong setting fails ``cdk synth`` with a
message that names it (``ecsEventExecutor.launcherMaxConcurrency: ...``). The model's fields are the keys in
snake case (``launcherMaxConcurrency`` is ``launcher_max_concurrency``); an unknown key fails. The README's
settings reference documents each key; the defaults in ``cdk.json`` build a complete stack with a new VPC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from ecs_event_executor.control.executor_config import ExecutorConfigError, validate_executor_config
from ecs_event_executor.control.launch_profiles import UNKNOWN_QUEUE_POLICIES, LaunchProfile, parse_profiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUseDefault

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
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,100}$")
_TEAM = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# A Secrets Manager secret's complete ARN (with the 6-character suffix Secrets Manager appends to its name).
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}-[A-Za-z0-9]{6}$"
)
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_LOG_GROUP = re.compile(r"^[\w#/.-]{1,512}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTAINER = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_CAPACITY_PROVIDER = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class SettingsError(ValueError):
    """A deployment setting is missing or invalid; the message names it."""


class _Problem(ValueError):
    """A rule across settings failed; ``key`` is the setting the message names."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def _text(
    pattern: re.Pattern[str] | None = None, hint: str = "", *, null: str = "default", echo: bool = True
) -> BeforeValidator:
    """A string setting; null or "" means the default (or, with ``null="none"``, None). ``echo=False``: an invalid
    value is not repeated in the error (it may be the secret itself, pasted where its ARN belongs)."""

    def check(value: Any) -> Any:
        if value is None or value == "":
            if null == "none":
                return None
            raise PydanticUseDefault()
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_json(value)}")
        if pattern is not None and not pattern.match(value):
            shown = repr(value) if echo else "the value"
            raise ValueError(f"{shown} is not valid{': ' + hint if hint else ''}")
        return value

    return BeforeValidator(check)


def _integer(low: int, high: int) -> BeforeValidator:
    """A whole number in [low, high] (true and false are not numbers); null means the default."""

    def check(value: Any) -> Any:
        if value is None:
            raise PydanticUseDefault()
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_json(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return BeforeValidator(check)


def _boolean() -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is None:
            raise PydanticUseDefault()
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_json(value)}")
        return value

    return BeforeValidator(check)


def _strings(pattern: re.Pattern[str], hint: str) -> BeforeValidator:
    """A list of distinct strings, each matching ``pattern``; null means none."""

    def check(value: Any) -> Any:
        value = value or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {_json(value)}")
        for v in value:
            if not pattern.match(v):
                raise ValueError(f"{v!r} is not valid: {hint}")
        if len(set(value)) != len(value):
            raise ValueError("lists the same value twice")
        return tuple(value)

    return BeforeValidator(check)


def _capacity_provider_strategy(value: Any) -> tuple[dict[str, Any], ...]:
    value = value or []
    if not isinstance(value, list):
        raise _Problem("capacityProviderStrategy", f"expected a list, got {_json(value)}")
    for i, entry in enumerate(value):
        key = f"capacityProviderStrategy[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("capacityProvider"), str):
            raise _Problem(key, 'expected {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}')
        if not _CAPACITY_PROVIDER.match(entry["capacityProvider"]):
            raise _Problem(
                f"{key}.capacityProvider", f"{entry['capacityProvider']!r} is not a capacity provider name"
            )
        extra = sorted(set(entry) - {"capacityProvider", "weight", "base"})
        if extra:
            raise _Problem(f"{key}.{extra[0]}", "unknown field; allowed: capacityProvider, weight, base")
        for num, high in (("weight", 1000), ("base", 100000)):
            number = entry.get(num, 0)
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= high:
                raise _Problem(
                    f"{key}.{num}", f"must be an integer between 0 and {high}, got {_json(number)}"
                )
    if value and not any(e.get("weight", 0) > 0 for e in value):
        raise _Problem("capacityProviderStrategy", "at least one provider needs a weight above 0")
    return tuple(dict(e) for e in value)


def _run_task_kwargs(value: Any) -> Any:
    # Fully checked against the container name by the model's rules, once both are read.
    if value and not isinstance(value, Mapping):
        _check_run_task_kwargs(value, container_name=None)
    return value or {}


def _check_run_task_kwargs(value: Any, container_name: str | None) -> None:
    try:
        validate_executor_config(value, container_name=container_name)
    except ExecutorConfigError as exc:
        raise _Problem("runTaskKwargs", str(exc).replace("executor_config", "runTaskKwargs")) from exc


def _launch_profiles(value: Any) -> dict[str, LaunchProfile]:
    if value is None:
        raise PydanticUseDefault()
    if not isinstance(value, Mapping):
        raise _Problem("launchProfiles", f"expected an object of named profiles, got {_json(value)}")
    try:
        return parse_profiles(value)
    except ValueError as exc:
        raise _Problem("launchProfiles", str(exc)) from None


# cdk.json's profiles: queue="spot" runs on Fargate Spot (the cluster the stack creates has that capacity provider).
DEFAULT_LAUNCH_PROFILES: Mapping[str, Any] = {
    "spot": {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}
}

_ROLE_HINT = "an IAM role ARN"
_NAME_HINT = "letters, digits, '-' or '_'"


# The worker image's build context and paths are relative to the CDK app's directory (where cdk.json is).
APP_DIR = Path(__file__).resolve().parent.parent
_VERSION = re.compile(r"^\d+\.\d+\.\d+([a-z0-9.]*)$")
_PYTHON_VERSION = re.compile(r"^3\.\d+$")
# The official images tag a release as apache/airflow:<version>[-python<x.y>].
_AIRFLOW_IMAGE = re.compile(r"^(docker\.io/)?apache/airflow:(?P<version>\d+\.\d+\.\d+)(-python\d+\.\d+)?$")


class WorkerImage(BaseModel):
    """How to build the worker image (worker/Dockerfile) as a CDK image asset: ``cdk deploy`` builds and pushes it."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    # A Docker build context holding the Dockerfile, the DAGs folder and the requirements file.
    directory: Annotated[str, _text()] = "worker"
    file: Annotated[str, _text()] = "Dockerfile"
    # The scheduler's Airflow version: the image's base and what the executor compares with at start.
    airflow_version: Annotated[str, _text(_VERSION, "an Airflow release such as 3.3.2")] = "3.3.2"
    python_version: Annotated[str, _text(_PYTHON_VERSION, "a Python version such as 3.12")] = "3.12"
    dags_folder: Annotated[str, _text()] = "dags"
    requirements: Annotated[str, _text()] = "requirements.txt"

    @property
    def context_dir(self) -> Path:
        return (APP_DIR / self.directory).resolve()

    @property
    def build_args(self) -> dict[str, str]:
        return {
            "AIRFLOW_VERSION": self.airflow_version,
            "PYTHON_VERSION": self.python_version,
            "DAGS_FOLDER": self.dags_folder,
            "REQUIREMENTS": self.requirements,
        }


class Settings(BaseModel):
    """The validated deployment settings. Field docs are in the README's settings reference."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name_prefix: Annotated[
        str, _text(_PREFIX, "2-24 lowercase letters, digits or '-', starting with a letter")
    ] = "airflow-ecs"
    account: Annotated[str | None, _text(_ACCOUNT, "a 12-digit AWS account id")] = None
    region: Annotated[str | None, _text(_REGION, "an AWS region such as eu-west-1")] = None
    availability_zones: Annotated[
        tuple[str, ...], _strings(_AZ, "an availability zone name such as eu-west-1a")
    ] = ()
    # Network: a new VPC when vpc_id is None.
    vpc_id: Annotated[str | None, _text(_VPC, "a VPC id such as vpc-0123456789abcdef0")] = None
    subnet_ids: Annotated[
        tuple[str, ...], _strings(_SUBNET, "a subnet id such as subnet-0123456789abcdef0")
    ] = ()
    security_group_ids: Annotated[
        tuple[str, ...], _strings(_SG, "a security group id such as sg-0123456789abcdef0")
    ] = ()
    nat_gateways: Annotated[int, _integer(0, 2)] = 0
    # Without NAT, tasks in the new VPC's public subnets need a public IP to pull images and reach AWS APIs;
    # unset, it is true exactly for a new VPC without NAT gateways (see _contextual_defaults).
    assign_public_ip: Annotated[bool, _boolean()] = True
    vpc_flow_logs: Annotated[bool, _boolean()] = True
    # Compute: a new cluster when cluster is None (a name or an ARN otherwise).
    cluster: Annotated[str | None, _text()] = None
    task_definition_arn: Annotated[
        str | None,
        _text(_TASK_DEF_ARN, "an ECS task definition ARN with its revision (...:task-definition/family:3)"),
    ] = None
    task_role_arn: Annotated[str | None, _text(_ROLE_ARN, _ROLE_HINT)] = None
    execution_role_arn: Annotated[str | None, _text(_ROLE_ARN, _ROLE_HINT)] = None
    log_group_name: Annotated[str | None, _text(_LOG_GROUP, "a CloudWatch Logs group name")] = None
    image: Annotated[str, _text()] = "apache/airflow:3.3.2"
    # Build the worker image from worker/Dockerfile instead of running ``image`` (null: no build, no Docker).
    worker_image: WorkerImage | None = None
    cpu: Annotated[int, _integer(256, 16384)] = 1024
    memory: Annotated[int, _integer(512, 122880)] = 2048
    container_name: Annotated[str, _text(_CONTAINER, _NAME_HINT)] = "base"
    log_stream_prefix: Annotated[str, _text(_CONTAINER, _NAME_HINT)] = "airflow"
    # Airflow 2.11 workers talk to the metadata database: the Secrets Manager secret holding its SQLAlchemy URL,
    # passed to the worker container as the ECS secret AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (never plain text).
    metadata_db_secret_arn: Annotated[
        str | None,
        _text(
            _SECRET_ARN,
            "a Secrets Manager secret's complete ARN (...:secret:name-AbCdEf)",
            null="none",
            echo=False,
        ),
    ] = None
    execution_api_server_url: Annotated[
        str, _text(_URL, "an http(s) URL such as https://airflow.example.com/execution/")
    ] = ""
    # Unset, FARGATE unless a capacity provider strategy is given (see _contextual_defaults).
    launch_type: Annotated[str | None, _text(null="none")] = "FARGATE"
    capacity_provider_strategy: Annotated[
        tuple[Mapping[str, Any], ...], BeforeValidator(_capacity_provider_strategy)
    ] = ()
    platform_version: Annotated[
        str | None, _text(re.compile(r"^(LATEST|\d+\.\d+\.\d+)$"), "LATEST or 1.4.0")
    ] = "LATEST"
    run_task_kwargs: Annotated[Mapping[str, Any], BeforeValidator(_run_task_kwargs)] = Field(
        default_factory=dict
    )
    # Control plane.
    # Launchers at once. Each environment paces RunTask to rate / launchers, and Lambda bills the wait for its
    # token: a launch waits 1 / (its share) on average in a burst, so 2 (the event source's minimum) halves
    # what 5 billed; the rate is the same. More only helps when RunTask itself is slow (infra/launcher.py).
    launcher_max_concurrency: Annotated[int, _integer(MIN_ESM_CONCURRENCY, MAX_ESM_CONCURRENCY)] = 2
    # The launcher's memory (Lambda's range): 128 bills its pacer waits least; more memory buys CPU (Lambda gives
    # CPU in proportion), i.e. shorter cold starts, for a bigger bill (infra/launcher.py says why 128).
    launcher_memory_mb: Annotated[int, _integer(128, 10240)] = 128
    # The account's RunTask rate in this region (Fargate: 20 calls per second); the launchers share it.
    run_task_calls_per_second: Annotated[int, _integer(1, 1000)] = 20
    # At least 2: it also caps the status queue's event source, whose maximum concurrency is 2 or more.
    status_reserved_concurrency: Annotated[int | None, _integer(2, 1000)] = None
    retry_horizon_seconds: Annotated[
        int, _integer(60, MAX_QUEUE_RETENTION_SECONDS - QUEUE_RETENTION_MARGIN_SECONDS)
    ] = 3600
    finished_item_ttl_days: Annotated[int, _integer(1, 365)] = 7
    log_retention_days: Annotated[int, _integer(1, 3653)] = 30
    alarm_email: Annotated[str | None, _text(_EMAIL, "an email address")] = None
    alarm_topic_arn: Annotated[str | None, _text(_TOPIC_ARN, "an SNS topic ARN")] = None
    # Reconciler: how often it runs, and how long an active item may go unchanged before it asks ECS.
    reconcile_every_minutes: Annotated[int, _integer(1, 30)] = 5
    reconcile_stale_after_seconds: Annotated[int, _integer(60, MAX_RECONCILE_WINDOW_SECONDS - 60)] = 600
    # Publish routine notifications (task launched, task succeeded) to the project bus; failures always are.
    publish_all_events: Annotated[bool, _boolean()] = False
    # Security (docs/security.md). The roles of the Airflow schedulers: the launch queue's policy denies
    # SendMessage to every other principal (the relaunch rule aside). Empty: nobody but the relaunch rule sends.
    scheduler_role_arns: Annotated[tuple[str, ...], _strings(_ROLE_ARN, _ROLE_HINT)] = ()
    # The one Airflow team this stack serves (one stack per team is the boundary between teams); null: any team.
    team: Annotated[str | None, _text(_TEAM, "letters, digits, '.', '-' or '_'", null="none")] = None
    # A customer-managed KMS key for the launch queue and its DLQ, the tasks table and the task log group.
    kms_key_arn: Annotated[str | None, _text(_KMS_KEY_ARN, "a KMS key ARN (...:key/<id>)", null="none")] = (
        None
    )
    # How far back the tasks table's point-in-time recovery reaches (its backups hold workload tokens); 0: off.
    point_in_time_recovery_days: Annotated[int, _integer(0, 35)] = 1
    # Launch profiles (docs/deploy.md): an Airflow task's queue picks one; the settings above are "default".
    launch_profiles: Annotated[Mapping[str, LaunchProfile], BeforeValidator(_launch_profiles)] = Field(
        default_factory=lambda: parse_profiles(DEFAULT_LAUNCH_PROFILES)
    )
    # A task whose queue names no profile: "default" (the default profile) or "refuse" (the launch fails).
    unknown_queue: Annotated[
        str, _text(re.compile(r"^(default|refuse)$"), " or ".join(UNKNOWN_QUEUE_POLICIES))
    ] = "default"
    # Images a task's executor_config may name (shell-style patterns); empty: this account's ECR repositories.
    allowed_images: Annotated[
        tuple[str, ...],
        _strings(re.compile(r"^[A-Za-z0-9*?][A-Za-z0-9._:/@*?-]{0,254}$"), "an image pattern"),
    ] = ()
    # The reconciler deregisters task definitions derived for per-task images after this many days unused.
    derived_task_definition_unused_days: Annotated[int, _integer(1, 365)] = 14

    @model_validator(mode="before")
    @classmethod
    def _contextual_defaults(cls, raw: Any) -> Any:
        """Fill the defaults that depend on other settings (public IP, launch type) before the fields are read.

        Two launch settings are refused first, before either is read: naming the one to unset is the fix.
        """
        if not isinstance(raw, Mapping):
            return raw
        filled = dict(raw)
        if filled.get("assignPublicIp") is None:
            filled["assignPublicIp"] = not filled.get("vpcId") and not filled.get("natGateways")
        if filled.get("launchType") and filled.get("capacityProviderStrategy"):
            raise _Problem(
                "launchType",
                "launchType and capacityProviderStrategy are mutually exclusive; set launchType to null",
            )
        if not filled.get("launchType"):
            filled["launchType"] = None if filled.get("capacityProviderStrategy") else "FARGATE"
        return filled

    @model_validator(mode="after")
    def _rules(self) -> Settings:
        """Check the rules across settings, each failure naming the setting to change."""
        for rule in _RULES:
            rule(self)
        return self

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

    def profile_task_definition_family_arn(self, name: str) -> str | None:
        """Return a profile's task definition ARN without its revision (for IAM), or None if it keeps the default."""
        arn = self.launch_profiles[name].task_definition
        match = _TASK_DEF_ARN.match(arn) if arn else None
        return match.group("family_arn") if match else None

    @property
    def worker_airflow_version(self) -> str | None:
        """Return the workers' Airflow version when the settings tell it (built image, or an official tag)."""
        if self.task_definition_arn is not None:
            return None
        if self.worker_image is not None:
            return self.worker_image.airflow_version
        match = _AIRFLOW_IMAGE.match(self.image)
        return match.group("version") if match else None

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


def _network(s: Settings) -> None:
    if s.vpc_id is None:
        if s.subnet_ids or s.security_group_ids:
            raise _Problem(
                "subnetIds" if s.subnet_ids else "securityGroupIds",
                "needs vpcId (the existing VPC they belong to)",
            )
        if s.region is not None and len(s.availability_zones) < 2:
            raise _Problem(
                "availabilityZones",
                "name two zones of the region when region is set, so synth needs no AZ lookup (offline, no credentials)",
            )
    else:
        if not s.subnet_ids:
            raise _Problem("subnetIds", "an existing VPC (vpcId) needs the subnets the tasks run in")
        if not s.security_group_ids:
            raise _Problem(
                "securityGroupIds", "an existing VPC (vpcId) needs the security groups of the tasks"
            )
        if s.nat_gateways:
            raise _Problem("natGateways", "only applies to a new VPC; set it to 0 when vpcId is set")
    region = s.region
    if (
        s.availability_zones
        and region is not None
        and not all(az.startswith(region) for az in s.availability_zones)
    ):
        raise _Problem("availabilityZones", f"every zone must be in region {region}")
    if s.vpc_id is None and s.nat_gateways == 0 and not s.assign_public_ip:
        raise _Problem("assignPublicIp", "must be true for a new VPC without NAT gateways (natGateways: 0)")


def _compute(s: Settings) -> None:
    if s.cluster is not None and not (_CLUSTER_ARN.match(s.cluster) or _CLUSTER_NAME.match(s.cluster)):
        raise _Problem("cluster", f"{s.cluster!r} is neither an ECS cluster name nor a cluster ARN")
    if s.task_definition_arn is not None:
        if s.metadata_db_secret_arn is not None:
            raise _Problem(
                "metadataDbSecretArn",
                "is set on a new task definition; give your own task definition the secret, or unset "
                "taskDefinitionArn",
            )
        if s.worker_image is not None:
            raise _Problem(
                "workerImage", "builds the image of a new task definition; unset taskDefinitionArn"
            )
        if s.log_group_name is None:
            raise _Problem(
                "logGroupName", "an existing task definition needs the awslogs group its container logs to"
            )
    else:
        for key, value in (
            ("taskRoleArn", s.task_role_arn),
            ("executionRoleArn", s.execution_role_arn),
            ("logGroupName", s.log_group_name),
        ):
            if value is not None:
                raise _Problem(key, "only applies to an existing task definition (set taskDefinitionArn)")
        _worker_image(s)
        if s.cpu not in FARGATE_MEMORY:
            raise _Problem(
                "cpu", f"Fargate accepts {', '.join(map(str, FARGATE_MEMORY))} CPU units, got {s.cpu}"
            )
        low, high, step = FARGATE_MEMORY[s.cpu]
        if not (low <= s.memory <= high and s.memory % step == 0):
            raise _Problem(
                "memory",
                f"with cpu {s.cpu}, Fargate accepts {low}-{high} MiB in steps of {step}, got {s.memory}",
            )


def _worker_image(s: Settings) -> None:
    """Check the worker image's build context offline, so a wrong path fails synth, not the deploy's build."""
    worker = s.worker_image
    if worker is None:
        return
    if "image" in s.model_fields_set and s.image != Settings.model_fields["image"].default:
        raise _Problem("image", "set image (a ready image) or workerImage (build one), not both")
    context = worker.context_dir
    if not context.is_dir():
        raise _Problem(
            "workerImage.directory", f"{worker.directory!r} is not a directory (relative to cdk.json)"
        )
    for key, name, kind in (
        ("file", worker.file, "file"),
        ("dagsFolder", worker.dags_folder, "directory"),
        ("requirements", worker.requirements, "file"),
    ):
        path = (context / name).resolve()
        if not path.is_relative_to(context):
            raise _Problem(
                f"workerImage.{key}", f"{name!r} is outside the build context {worker.directory!r}"
            )
        if not (path.is_dir() if kind == "directory" else path.is_file()):
            raise _Problem(
                f"workerImage.{key}", f"no {kind} {name!r} in the build context {worker.directory!r}"
            )


def _launch(s: Settings) -> None:
    if s.launch_type is not None and s.launch_type not in ("FARGATE", "EC2", "EXTERNAL"):
        raise _Problem("launchType", f"must be FARGATE, EC2 or EXTERNAL, got {s.launch_type!r}")
    custom_providers = [
        e["capacityProvider"]
        for e in s.capacity_provider_strategy
        if not str(e["capacityProvider"]).startswith("FARGATE")
    ]
    needs_ec2 = bool(custom_providers) or s.launch_type in ("EC2", "EXTERNAL")
    key = "capacityProviderStrategy" if custom_providers else "launchType"
    if s.cluster is None and needs_ec2:
        raise _Problem(
            key,
            "EC2 and external capacity need an existing cluster (set cluster); a new cluster has Fargate only",
        )
    if s.task_definition_arn is None and needs_ec2:
        raise _Problem(
            key, "the task definition this stack creates runs on Fargate only; for EC2 set taskDefinitionArn"
        )
    _check_run_task_kwargs(s.run_task_kwargs, s.container_name)


def _control_plane(s: Settings) -> None:
    rate, launchers = s.run_task_calls_per_second, s.launcher_max_concurrency
    if rate / launchers < MIN_LAUNCHER_RUN_TASK_RATE:
        raise _Problem(
            "runTaskCallsPerSecond",
            f"{rate} calls/s shared by launcherMaxConcurrency={launchers} launchers is "
            f"{rate / launchers:g}/s each; each needs at least "
            f"{MIN_LAUNCHER_RUN_TASK_RATE:g}/s to launch a batch of 10 within its timeout (lower "
            "launcherMaxConcurrency)",
        )
    if s.log_retention_days not in LOG_RETENTION_DAYS:
        raise _Problem(
            "logRetentionDays",
            f"CloudWatch Logs accepts {', '.join(map(str, LOG_RETENTION_DAYS))}, got {s.log_retention_days}",
        )
    if s.alarm_email and s.alarm_topic_arn:
        raise _Problem("alarmEmail", "set alarmEmail (a new topic) or alarmTopicArn (your topic), not both")


def _reconcile(s: Settings) -> None:
    """Keep reconcileEveryMinutes + reconcileStaleAfterSeconds well inside ECS's memory of stopped tasks."""
    every, stale_after = s.reconcile_every_minutes, s.reconcile_stale_after_seconds
    window = stale_after + every * 60
    if window > MAX_RECONCILE_WINDOW_SECONDS:
        raise _Problem(
            "reconcileStaleAfterSeconds",
            f"{stale_after} s plus reconcileEveryMinutes ({every} min) is {window} s; keep the sum within "
            f"{MAX_RECONCILE_WINDOW_SECONDS} s, well inside the hour ECS keeps stopped tasks (DescribeTasks)",
        )


def _profiles(s: Settings) -> None:
    """A profile names existing resources by ARN (IAM is scoped to them) and runs where its capacity exists."""
    for name, profile in s.launch_profiles.items():
        key = f"launchProfiles.{name}"
        if profile.task_definition is not None and not _TASK_DEF_ARN.match(profile.task_definition):
            raise _Problem(
                f"{key}.taskDefinition",
                "must be a task definition ARN with its revision (...:task-definition/family:3)",
            )
        if profile.cluster is not None and not (
            _CLUSTER_ARN.match(profile.cluster) or _CLUSTER_NAME.match(profile.cluster)
        ):
            raise _Problem(
                f"{key}.cluster", f"{profile.cluster!r} is neither an ECS cluster name nor a cluster ARN"
            )
        custom = [
            e
            for e in profile.capacity_provider_strategy
            if not str(e["capacityProvider"]).startswith("FARGATE")
        ]
        if (
            (custom or profile.launch_type in ("EC2", "EXTERNAL"))
            and profile.cluster is None
            and s.cluster is None
        ):
            raise _Problem(
                f"{key}.cluster",
                "EC2 and external capacity need an existing cluster; the stack's new one has Fargate only",
            )
        try:
            validate_executor_config(profile.run_task_kwargs, container_name=s.container_name)
        except ExecutorConfigError as exc:
            raise _Problem(
                f"{key}.runTaskKwargs", str(exc).replace("executor_config", "runTaskKwargs")
            ) from exc


_RULES: tuple[Callable[[Settings], None], ...] = (
    _network,
    _compute,
    _launch,
    _control_plane,
    _reconcile,
    _profiles,
)


def load_settings(context: Mapping[str, Any] | None) -> Settings:
    """Validate the ``ecsEventExecutor`` context value and return the settings; raise SettingsError naming the key."""
    raw: Any = context or {}
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{CONTEXT_KEY}: expected an object, got {_json(raw)}")
    known = sorted(field.alias or name for name, field in Settings.model_fields.items())
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError(
            f"{CONTEXT_KEY}.{unknown[0]}: unknown setting; known settings: {', '.join(known)}"
        )
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """Return the first problem as 'ecsEventExecutor.<key>: <problem>'."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problem):
        return f"{CONTEXT_KEY}.{cause.key}: {cause}"
    key = ".".join(str(part) for part in error["loc"])
    problem = str(cause) if cause is not None else error["msg"]
    return f"{CONTEXT_KEY}.{key}: {problem}" if key else f"{CONTEXT_KEY}: {problem}"
