"""RunTask arguments: the launch configuration and the merge of a task's ``executor_config`` over it.

The launch configuration uses AwsEcsExecutor's settings (as environment variables of the launcher, read by
``environment.LambdaEnvironment``), so users migrate by copying values. ``executor_config`` holds RunTask
parameters (checked by ``executor_config.py``); it is merged over the configuration the way AwsEcsExecutor merges
it: nested dicts merge, lists replace. A launch profile (``launch_profiles.py``) replaces parts of the configuration
first (``LaunchConfig.for_profile``). Every task is tagged for cost attribution (its dag, task, run, try and team),
with ECS managed tags on and the task definition's tags propagated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.ecs_state import STARTED_BY
from ecs_event_executor.control.environment import LambdaEnvironment
from ecs_event_executor.control.executor_config import (
    check_overrides_size,
    run_task_parameters,
    set_workload,
    validate_executor_config,
    validate_run_task_parameters,
    with_cost_tags,
)
from ecs_event_executor.control.launch_profiles import LaunchProfile
from ecs_event_executor.control.messages import client_token

# Cost attribution: ECS adds its own tags (cluster, service) and copies the task definition's tags to the task;
# runTaskKwargs or a task's executor_config may set other values.
COST_DEFAULTS = {"enableECSManagedTags": True, "propagateTags": "TASK_DEFINITION"}


@dataclass(frozen=True)
class LaunchConfig:
    """Where and how ECS tasks are started; read from the launcher's environment."""

    cluster: str
    task_definition: str
    container_name: str
    launch_type: str | None = None
    capacity_provider_strategy: tuple[dict[str, Any], ...] = ()
    platform_version: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = False
    run_task_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LaunchConfig:
        """Read and validate the launch settings; a bad one raises EnvironmentVariableError naming it."""
        return cls.from_environment(LambdaEnvironment.read(env))

    @classmethod
    def from_environment(cls, env: LambdaEnvironment) -> LaunchConfig:
        """Take the launch settings from an already read environment; a missing one raises naming it."""
        return cls(
            cluster=env.require(env_vars.CLUSTER),
            task_definition=env.require(env_vars.TASK_DEFINITION),
            container_name=env.require(env_vars.CONTAINER_NAME),
            launch_type=env.launch_type,
            capacity_provider_strategy=env.capacity_provider_strategy,
            platform_version=env.platform_version,
            subnets=env.subnets,
            security_groups=env.security_groups,
            assign_public_ip=env.assign_public_ip,
            run_task_kwargs=env.run_task_kwargs,
        )

    def for_profile(self, profile: LaunchProfile) -> LaunchConfig:
        """Return this configuration with ``profile``'s values in place of its own; its RunTask parameters
        merge over RUN_TASK_KWARGS, and a launch type or strategy of the profile replaces the other one."""
        changes: dict[str, Any] = {
            "run_task_kwargs": merge_dicts(self.run_task_kwargs, profile.run_task_overrides())
        }
        if profile.cluster:
            changes["cluster"] = profile.cluster
        if profile.task_definition:
            changes["task_definition"] = profile.task_definition
        if profile.launch_type or profile.capacity_provider_strategy:
            changes["launch_type"] = profile.launch_type
            changes["capacity_provider_strategy"] = profile.capacity_provider_strategy
        if profile.platform_version:
            changes["platform_version"] = profile.platform_version
        return replace(self, **changes)

    def base_kwargs(self) -> dict[str, Any]:
        """Return the RunTask arguments every launch starts from (before executor_config)."""
        kwargs: dict[str, Any] = {"cluster": self.cluster, "taskDefinition": self.task_definition, "count": 1}
        if self.capacity_provider_strategy:
            kwargs["capacityProviderStrategy"] = [dict(e) for e in self.capacity_provider_strategy]
        elif self.launch_type:
            kwargs["launchType"] = self.launch_type
        uses_fargate = self.launch_type == "FARGATE" or any(
            str(e.get("capacityProvider", "")).startswith("FARGATE") for e in self.capacity_provider_strategy
        )
        if self.platform_version and uses_fargate:
            kwargs["platformVersion"] = self.platform_version
        if self.subnets or self.security_groups:
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                }
            }
        return merge_over_launch_choice(kwargs, dict(self.run_task_kwargs))


# ECS takes a launch type or a capacity provider strategy, never both: whichever an override names replaces the
# other, as the user asked for it.
_LAUNCH_CHOICES = ("launchType", "capacityProviderStrategy")


def merge_over_launch_choice(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``; a launch type or capacity provider strategy in ``override`` replaces the
    other one in ``base`` (ECS refuses both), and a platform version of ``base`` goes when the result no longer
    runs on Fargate (ECS takes it only there)."""
    base = dict(base)
    if any(choice in override for choice in _LAUNCH_CHOICES):
        for choice in _LAUNCH_CHOICES:
            base.pop(choice, None)
    merged = merge_dicts(base, override)
    if "platformVersion" not in override and not uses_fargate(merged):
        merged.pop("platformVersion", None)
    return merged


def uses_fargate(kwargs: Mapping[str, Any]) -> bool:
    """Return whether RunTask arguments run the task on Fargate (launch type or capacity providers)."""
    strategy = kwargs.get("capacityProviderStrategy") or []
    if strategy:
        return any(str(e.get("capacityProvider", "")).startswith("FARGATE") for e in strategy)
    return kwargs.get("launchType") == "FARGATE"


def merge_dicts(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: nested dicts merge, everything else (lists too) replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_run_task_kwargs(
    config: LaunchConfig,
    *,
    launch_id: str,
    attempt: int,
    command: list[str],
    executor_config: Mapping[str, Any] | None,
    tags: list[dict[str, str]] | None = None,
    task_definition: str | None = None,
) -> dict[str, Any]:
    """Return the RunTask arguments for one attempt of one launch.

    ``tags`` (the cost tags) are added to the configured ones; ``task_definition`` (one derived for the task's
    image) replaces the configured one. Raises ExecutorConfigError for an invalid executor_config or result
    (naming the field) and OverridesTooLarge when the overrides exceed ECS's limit (naming the limit and size).
    """
    validate_executor_config(executor_config, container_name=config.container_name)
    base = {**COST_DEFAULTS, **config.base_kwargs()}
    kwargs = merge_over_launch_choice(base, run_task_parameters(executor_config or {}))
    if task_definition is not None:
        kwargs["taskDefinition"] = task_definition
    if tags:
        kwargs["tags"] = with_cost_tags(kwargs.get("tags"), tags)
    overrides = kwargs.setdefault("overrides", {})
    set_workload(
        overrides,
        container_name=config.container_name,
        launch_id=launch_id,
        attempt=attempt,
        command=command,
    )
    kwargs["startedBy"] = STARTED_BY
    kwargs["count"] = 1
    kwargs["clientToken"] = client_token(launch_id, attempt)
    check_overrides_size(overrides)
    # The profile's and the task's parameters together, as ECS will see them (tag count, a launch choice).
    validate_run_task_parameters(kwargs)
    return kwargs
