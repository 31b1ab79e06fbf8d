"""Launch profiles: named launch configurations an Airflow task picks with its ``queue``.

A profile changes where and how a task runs (cluster, task definition, launch type or capacity provider
strategy, platform version, task cpu/memory, more RunTask parameters) over the stack's own launch settings, which
are the ``default`` profile. The stack's ``cdk.json`` names them (``ecsEventExecutor.launchProfiles``, the same
camelCase keys), the launcher reads them from ``LAUNCH_PROFILES``, and the executor knows their names
(``[ecs_event_executor] launch_profiles``) to refuse an unknown queue when it queues the task.

Routing (``profile_for_queue``): no queue or Airflow's default queue (``default``) is the default profile; a
queue named like a profile is that profile; any other queue is the default profile, or refused when the
unknown-queue policy says ``refuse``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ecs_event_executor.control.executor_config import ExecutorConfigError, validate_executor_config

# The stack's own launch settings; also Airflow's default queue ([operators] default_queue).
DEFAULT_PROFILE = "default"
# What an unknown queue gets: the default profile, or a refusal naming the queue.
UNKNOWN_QUEUE_POLICIES = ("default", "refuse")
PROFILE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class UnknownQueue(ValueError):
    """A task's queue names no launch profile and unknown queues are refused; the text says which setting."""


class LaunchProfile(BaseModel):
    """One named launch configuration; every field left out keeps the stack's own (default) value."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    cluster: str | None = Field(None, min_length=1)
    # A task definition ARN (or family:revision); images a task names are derived from it.
    task_definition: str | None = Field(None, min_length=1)
    launch_type: Literal["FARGATE", "EC2", "EXTERNAL"] | None = None
    capacity_provider_strategy: tuple[dict[str, Any], ...] = ()
    platform_version: str | None = None
    # Task-level size (RunTask overrides.cpu / overrides.memory): CPU units and MiB.
    cpu: int | None = Field(None, ge=128, le=196608)
    memory: int | None = Field(None, ge=128, le=1048576)
    run_task_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("capacity_provider_strategy")
    @classmethod
    def _strategy(cls, value: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for i, entry in enumerate(value):
            if not isinstance(entry.get("capacityProvider"), str):
                raise ValueError(f"capacityProviderStrategy[{i}] needs a string capacityProvider")
        return value

    @model_validator(mode="after")
    def _rules(self) -> LaunchProfile:
        if self.launch_type and self.capacity_provider_strategy:
            raise ValueError("launchType and capacityProviderStrategy are mutually exclusive; set one")
        try:
            validate_executor_config(self.run_task_kwargs)
        except ExecutorConfigError as exc:
            raise ValueError(str(exc).replace("executor_config", "runTaskKwargs")) from None
        return self

    def run_task_overrides(self) -> dict[str, Any]:
        """Return the RunTask parameters this profile merges over the default ones (its size included)."""
        kwargs = dict(self.run_task_kwargs)
        size = {k: str(v) for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}
        if size:
            kwargs["overrides"] = {**dict(kwargs.get("overrides") or {}), **size}
        return kwargs

    def as_json(self) -> dict[str, Any]:
        """Return the profile as the camelCase JSON of ``cdk.json`` and ``LAUNCH_PROFILES`` (unset left out)."""
        return self.model_dump(by_alias=True, exclude_defaults=True, mode="json")


def parse_profiles(raw: Mapping[str, Any]) -> dict[str, LaunchProfile]:
    """Validate a ``{name: profile}`` object; ValueError names the profile and the field."""
    profiles: dict[str, LaunchProfile] = {}
    for name, value in raw.items():
        if not re.match(PROFILE_NAME_PATTERN, name):
            raise ValueError(f"{name!r}: a profile name is 1-64 letters, digits, '.', '-' or '_'")
        if name == DEFAULT_PROFILE:
            raise ValueError(
                f"{name!r}: the default profile is the stack's own launch settings; name it otherwise"
            )
        if not isinstance(value, Mapping):
            raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
        try:
            profiles[name] = LaunchProfile.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            cause = (first.get("ctx") or {}).get("error")
            problem = str(cause) if cause is not None else first["msg"]
            raise ValueError(f"{name}{'.' + where if where else ''}: {problem}") from None
    return profiles


def profile_for_queue(
    queue: str | None,
    names: Collection[str],
    *,
    unknown: str = "default",
    setting: str = "the unknown-queue policy",
) -> str:
    """Return the profile a task on ``queue`` launches with; raise UnknownQueue when it names none and
    ``unknown`` is ``refuse`` (the message names ``setting``, the policy that refused it)."""
    if queue and queue in names:
        return queue
    if not queue or queue == DEFAULT_PROFILE or unknown != "refuse":
        return DEFAULT_PROFILE
    known = ", ".join(sorted({DEFAULT_PROFILE, *names}))
    raise UnknownQueue(f"queue {queue!r} names no launch profile (known: {known}) and {setting} is refuse")
