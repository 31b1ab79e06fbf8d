"""The control plane's Lambda environment: every variable's name, and the one typed model that reads them.

The stack (``infra/``), the local mode, the benchmark and the tests set these variables through the constants
below; the launcher, the status handler and the reconciler read them through ``LambdaEnvironment.read``. A
missing or invalid value raises ``EnvironmentVariableError`` naming the variable. The launch variables keep
AwsEcsExecutor's names (``CLUSTER``, ``SUBNETS``, ...), so users migrate by copying values.

Adding a variable: a constant here, a field of ``LambdaEnvironment`` (aliased to the constant), the service
that reads it, and the construct in ``infra/`` that sets it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecs_event_executor.control.executor_config import ExecutorConfigError, validate_executor_config
from ecs_event_executor.control.launch_profiles import UNKNOWN_QUEUE_POLICIES, LaunchProfile, parse_profiles

# The launch configuration (AwsEcsExecutor's names).
TASKS_TABLE_NAME = "TASKS_TABLE_NAME"
CLUSTER = "CLUSTER"
TASK_DEFINITION = "TASK_DEFINITION"
CONTAINER_NAME = "CONTAINER_NAME"
LAUNCH_TYPE = "LAUNCH_TYPE"
CAPACITY_PROVIDER_STRATEGY = "CAPACITY_PROVIDER_STRATEGY"
PLATFORM_VERSION = "PLATFORM_VERSION"
SUBNETS = "SUBNETS"
SECURITY_GROUPS = "SECURITY_GROUPS"
ASSIGN_PUBLIC_IP = "ASSIGN_PUBLIC_IP"
RUN_TASK_KWARGS = "RUN_TASK_KWARGS"
# Launch profiles (a task's Airflow queue picks one): a JSON object {name: profile} (control/launch_profiles.py).
LAUNCH_PROFILES = "LAUNCH_PROFILES"
# What a queue that names no profile gets: "default" (the default profile) or "refuse".
UNKNOWN_QUEUE = "UNKNOWN_QUEUE"
# Images a task's executor_config may name (comma-separated shell-style patterns); unset: none.
ALLOWED_IMAGES = "ALLOWED_IMAGES"
# The reconciler deregisters task definitions derived for an image that no launch used for this many days.
DERIVED_TASK_DEFINITION_UNUSED_DAYS = "DERIVED_TASK_DEFINITION_UNUSED_DAYS"
# The control plane's own.
EVENT_BUS_NAME = "EVENT_BUS_NAME"
PUBLISH_ALL_EVENTS = "PUBLISH_ALL_EVENTS"
FINISHED_TTL_SECONDS = "FINISHED_TTL_SECONDS"
LAUNCH_QUEUE_URL = "LAUNCH_QUEUE_URL"
DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
LAUNCH_LEASE_SECONDS = "LAUNCH_LEASE_SECONDS"
LAUNCH_BACKOFF_MAX_SECONDS = "LAUNCH_BACKOFF_MAX_SECONDS"
LAUNCH_PARALLELISM = "LAUNCH_PARALLELISM"
LAUNCHER_RUN_TASK_RATE = "LAUNCHER_RUN_TASK_RATE"
STALE_AFTER_SECONDS = "STALE_AFTER_SECONDS"
RECONCILE_PAGE_SIZE = "RECONCILE_PAGE_SIZE"
# The status function's on-failure destination (ECS events whose invocation failed after Lambda's retries): the
# reconciler replays them on each pass (control/failed_events.py); unset: nothing to replay.
FAILED_EVENTS_QUEUE_URL = "FAILED_EVENTS_QUEUE_URL"
# The one Airflow team this stack serves (one stack per team is the isolation boundary); unset: any team.
TEAM = "TEAM"
# Read by Powertools in the handlers; set per function by the stack.
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
POWERTOOLS_METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
DEFAULT_METRICS_NAMESPACE = "AirflowEcsEventExecutor"

LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL")


class EnvironmentVariableError(ValueError):
    """A Lambda environment variable is missing or invalid; the message names it."""


def _true_or_false(accepted_true: tuple[str, ...], accepted_false: tuple[str, ...]) -> Callable[[str], bool]:
    def parse(value: str) -> bool:
        lowered = value.lower()
        if lowered in accepted_true:
            return True
        if lowered in accepted_false:
            return False
        raise ValueError(f"must be true or false, got {lowered!r}")

    return parse


_publish_all = _true_or_false(("true", "1", "yes"), ("false", "0", "no"))
_public_ip = _true_or_false(("true", "enabled"), ("false", "disabled"))


def _parse_json(raw: str) -> Any:
    """Parse one JSON variable; the error (pydantic adds the variable's name) says why it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"is not valid JSON: {exc}") from exc


class LambdaEnvironment(BaseModel):
    """Every variable the control plane's Lambdas read, parsed; ``None`` is a variable not set (or blank).

    Which variables a service requires is the service's business (``require``); defaults live with the
    service's settings.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    tasks_table_name: str | None = Field(None, validation_alias=TASKS_TABLE_NAME)
    cluster: str | None = Field(None, validation_alias=CLUSTER)
    task_definition: str | None = Field(None, validation_alias=TASK_DEFINITION)
    container_name: str | None = Field(None, validation_alias=CONTAINER_NAME)
    launch_type: str | None = Field(None, validation_alias=LAUNCH_TYPE)
    capacity_provider_strategy: tuple[dict[str, Any], ...] = Field(
        (), validation_alias=CAPACITY_PROVIDER_STRATEGY
    )
    platform_version: str | None = Field(None, validation_alias=PLATFORM_VERSION)
    subnets: tuple[str, ...] = Field((), validation_alias=SUBNETS)
    security_groups: tuple[str, ...] = Field((), validation_alias=SECURITY_GROUPS)
    assign_public_ip: bool = Field(False, validation_alias=ASSIGN_PUBLIC_IP)
    run_task_kwargs: dict[str, Any] = Field(default_factory=dict, validation_alias=RUN_TASK_KWARGS)
    launch_profiles: dict[str, LaunchProfile] = Field(default_factory=dict, validation_alias=LAUNCH_PROFILES)
    unknown_queue: str = Field("default", validation_alias=UNKNOWN_QUEUE)
    allowed_images: tuple[str, ...] = Field((), validation_alias=ALLOWED_IMAGES)
    derived_task_definition_unused_days: int | None = Field(
        None, validation_alias=DERIVED_TASK_DEFINITION_UNUSED_DAYS
    )
    event_bus_name: str | None = Field(None, validation_alias=EVENT_BUS_NAME)
    publish_all_events: bool = Field(False, validation_alias=PUBLISH_ALL_EVENTS)
    finished_ttl_seconds: int | None = Field(None, validation_alias=FINISHED_TTL_SECONDS)
    launch_queue_url: str | None = Field(None, validation_alias=LAUNCH_QUEUE_URL)
    dead_letter_queue_url: str | None = Field(None, validation_alias=DEAD_LETTER_QUEUE_URL)
    launch_lease_seconds: int | None = Field(None, validation_alias=LAUNCH_LEASE_SECONDS)
    launch_backoff_max_seconds: int | None = Field(None, validation_alias=LAUNCH_BACKOFF_MAX_SECONDS)
    launch_parallelism: int | None = Field(None, validation_alias=LAUNCH_PARALLELISM)
    launcher_run_task_rate: float | None = Field(None, validation_alias=LAUNCHER_RUN_TASK_RATE)
    stale_after_seconds: int | None = Field(None, validation_alias=STALE_AFTER_SECONDS)
    reconcile_page_size: int | None = Field(None, validation_alias=RECONCILE_PAGE_SIZE)
    failed_events_queue_url: str | None = Field(None, validation_alias=FAILED_EVENTS_QUEUE_URL)
    team: str | None = Field(None, validation_alias=TEAM)

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> LambdaEnvironment:
        """Parse ``env`` (default: this process's environment); raise EnvironmentVariableError naming a bad one."""
        env = os.environ if env is None else env
        aliases = {str(f.validation_alias) for f in cls.model_fields.values()}
        present = {k: v.strip() for k, v in env.items() if k in aliases and v.strip()}
        try:
            return cls.model_validate(present)
        except ValidationError as exc:
            raise EnvironmentVariableError(_describe(exc)) from None

    def require(self, name: str) -> str:
        """Return the value of the text variable ``name``; raise naming it when it is not set."""
        field = next(f for f, info in type(self).model_fields.items() if info.validation_alias == name)
        value = getattr(self, field)
        if value is None:
            raise EnvironmentVariableError(f"{name} is required and not set")
        return str(value)

    @field_validator("capacity_provider_strategy", "run_task_kwargs", mode="before")
    @classmethod
    def _json(cls, raw: Any, info: Any) -> Any:
        kind = list if info.field_name == "capacity_provider_strategy" else dict
        value = _parse_json(raw)
        if not isinstance(value, kind):
            raise ValueError(f"must be a JSON {kind.__name__}, got {type(value).__name__}")
        if kind is list:
            for i, entry in enumerate(value):
                if not isinstance(entry, dict) or not isinstance(entry.get("capacityProvider"), str):
                    raise EnvironmentVariableError(
                        f"{CAPACITY_PROVIDER_STRATEGY}[{i}] needs a string capacityProvider"
                    )
        return value

    @field_validator("launch_profiles", mode="before")
    @classmethod
    def _profiles(cls, raw: str) -> dict[str, LaunchProfile]:
        value = _parse_json(raw)
        if not isinstance(value, dict):
            raise ValueError(f"must be a JSON object of profiles, got {type(value).__name__}")
        return parse_profiles(value)

    @field_validator("unknown_queue")
    @classmethod
    def _unknown_queue(cls, value: str) -> str:
        if value.lower() not in UNKNOWN_QUEUE_POLICIES:
            raise ValueError(f"must be default or refuse, got {value!r}")
        return value.lower()

    @field_validator("subnets", "security_groups", "allowed_images", mode="before")
    @classmethod
    def _csv(cls, raw: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in raw.split(",") if v.strip())

    @field_validator("launch_type")
    @classmethod
    def _launch_type(cls, value: str) -> str:
        if value.upper() not in LAUNCH_TYPES:
            raise ValueError(f"must be FARGATE, EC2 or EXTERNAL, got {value!r}")
        return value.upper()

    @field_validator("assign_public_ip", mode="before")
    @classmethod
    def _assign_public_ip(cls, raw: str) -> bool:
        return _public_ip(raw)

    @field_validator("publish_all_events", mode="before")
    @classmethod
    def _publish_all_events(cls, raw: str) -> bool:
        return _publish_all(raw)

    @field_validator(
        "finished_ttl_seconds",
        "launch_lease_seconds",
        "launch_backoff_max_seconds",
        "launch_parallelism",
        "stale_after_seconds",
        "reconcile_page_size",
        "derived_task_definition_unused_days",
        mode="before",
    )
    @classmethod
    def _positive_whole_number(cls, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError as exc:
            raise ValueError(f"must be a whole number, got {raw!r}") from exc
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")
        return value

    @field_validator("launcher_run_task_rate", mode="before")
    @classmethod
    def _rate(cls, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError as exc:
            raise ValueError(f"must be a number of calls per second, got {raw!r}") from exc
        if not value > 0:
            raise ValueError(f"must be positive, got {raw!r}")
        return value

    @model_validator(mode="after")
    def _launch_rules(self) -> LambdaEnvironment:
        if self.launch_type and self.capacity_provider_strategy:
            raise EnvironmentVariableError(
                f"{LAUNCH_TYPE} and {CAPACITY_PROVIDER_STRATEGY} are mutually exclusive; set one"
            )
        if self.run_task_kwargs:
            try:
                validate_executor_config(self.run_task_kwargs, container_name=self.container_name)
            except ExecutorConfigError as exc:
                raise EnvironmentVariableError(
                    f"{RUN_TASK_KWARGS} is invalid: {exc}".replace("executor_config", RUN_TASK_KWARGS)
                ) from exc
        return self


def _describe(exc: ValidationError) -> str:
    """Return the first problem as '<VARIABLE> <problem>' (a cross-variable rule's message names its own)."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, EnvironmentVariableError):
        return str(cause)
    problem = str(cause) if cause is not None else error["msg"]
    name = ".".join(str(part) for part in error["loc"])
    return f"{name} {problem}" if name else problem
