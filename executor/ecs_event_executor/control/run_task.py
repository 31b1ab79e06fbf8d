"""RunTask arguments: the launch configuration, ``executor_config`` validation and the merge.

The launch configuration uses AwsEcsExecutor's settings (as environment variables of the launcher), so users
migrate by copying values. ``executor_config`` holds RunTask parameters; it is merged over the configuration the
way AwsEcsExecutor merges it: nested dicts merge, lists replace. The executor validates it at queue time with the
same function the launcher applies, so a bad value fails the task instance at once, naming the field.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY
from ecs_event_executor.control.messages import client_token

# ECS limit: the JSON of `overrides` may hold at most 8192 characters, formatting included.
OVERRIDES_MAX_CHARS = 8192


class LaunchConfigError(ValueError):
    """A launcher environment variable is missing or invalid; the message names it."""


class ExecutorConfigError(ValueError):
    """A task's executor_config is not a valid set of RunTask overrides; the message names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field_path = field_path
        super().__init__(
            f"executor_config.{field_path}: {problem}" if field_path else f"executor_config: {problem}"
        )


class OverridesTooLarge(ExecutorConfigError):
    """The container overrides exceed ECS's 8192-character limit."""


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
        """Read and validate the launch settings; a bad one raises LaunchConfigError naming the variable."""
        env = os.environ if env is None else env

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise LaunchConfigError(f"{name} is required and not set")
            return value

        def optional(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def json_value(name: str, kind: type) -> Any:
            raw = optional(name)
            if raw is None:
                return None
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise LaunchConfigError(f"{name} is not valid JSON: {exc}") from exc
            if not isinstance(value, kind):
                raise LaunchConfigError(f"{name} must be a JSON {kind.__name__}, got {type(value).__name__}")
            return value

        launch_type = optional("LAUNCH_TYPE")
        strategy = json_value("CAPACITY_PROVIDER_STRATEGY", list) or []
        if launch_type and strategy:
            raise LaunchConfigError(
                "LAUNCH_TYPE and CAPACITY_PROVIDER_STRATEGY are mutually exclusive; set one"
            )
        if launch_type and launch_type.upper() not in ("FARGATE", "EC2", "EXTERNAL"):
            raise LaunchConfigError(f"LAUNCH_TYPE must be FARGATE, EC2 or EXTERNAL, got {launch_type!r}")
        for i, entry in enumerate(strategy):
            if not isinstance(entry, dict) or not isinstance(entry.get("capacityProvider"), str):
                raise LaunchConfigError(f"CAPACITY_PROVIDER_STRATEGY[{i}] needs a string capacityProvider")
        public_ip = (optional("ASSIGN_PUBLIC_IP") or "false").lower()
        if public_ip not in ("true", "false", "enabled", "disabled"):
            raise LaunchConfigError(f"ASSIGN_PUBLIC_IP must be true or false, got {public_ip!r}")
        run_task_kwargs = json_value("RUN_TASK_KWARGS", dict) or {}
        try:
            validate_executor_config(run_task_kwargs, container_name=required("CONTAINER_NAME"))
        except ExecutorConfigError as exc:
            raise LaunchConfigError(
                f"RUN_TASK_KWARGS is invalid: {exc}".replace("executor_config", "RUN_TASK_KWARGS")
            ) from exc
        return cls(
            cluster=required("CLUSTER"),
            task_definition=required("TASK_DEFINITION"),
            container_name=required("CONTAINER_NAME"),
            launch_type=launch_type.upper() if launch_type else None,
            capacity_provider_strategy=tuple(strategy),
            platform_version=optional("PLATFORM_VERSION"),
            subnets=_csv(optional("SUBNETS")),
            security_groups=_csv(optional("SECURITY_GROUPS")),
            assign_public_ip=public_ip in ("true", "enabled"),
            run_task_kwargs=run_task_kwargs,
        )

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
        return merge_dicts(kwargs, dict(self.run_task_kwargs))


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def merge_dicts(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: nested dicts merge, everything else (lists too) replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# RunTask parameters a task may override, with their JSON types.
_ALLOWED_TOP_LEVEL: Mapping[str, type | tuple[type, ...]] = {
    "capacityProviderStrategy": list,
    "cluster": str,
    "enableECSManagedTags": bool,
    "enableExecuteCommand": bool,
    "group": str,
    "launchType": str,
    "networkConfiguration": dict,
    "overrides": dict,
    "placementConstraints": list,
    "placementStrategy": list,
    "platformVersion": str,
    "propagateTags": str,
    "referenceId": str,
    "tags": list,
    "taskDefinition": str,
    "volumeConfigurations": list,
}
# Set by the control plane: overriding them would break idempotency, event routing or the task's identity.
_RESERVED_TOP_LEVEL = {
    "command": "the command is the Airflow workload and is set by the executor",
    "name": "the container name is set by the launch configuration",
    "clientToken": "the launcher derives it from the task key, try number and attempt",
    "startedBy": f"the control plane marks its tasks with startedBy={STARTED_BY!r}",
    "count": "one task instance is one ECS task",
}
_OVERRIDES_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "containerOverrides": list,
    "cpu": str,
    "memory": str,
    "ephemeralStorage": dict,
    "executionRoleArn": str,
    "taskRoleArn": str,
    "inferenceAcceleratorOverrides": list,
}
_CONTAINER_OVERRIDE_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "name": str,
    "command": list,
    "environment": list,
    "environmentFiles": list,
    "cpu": int,
    "memory": int,
    "memoryReservation": int,
    "resourceRequirements": list,
}
_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "true or false", int: "an integer"}


def _check_type(path: str, value: Any, expected: type | tuple[type, ...]) -> None:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    # bool is an int in Python; a count given as true/false is a mistake, not a number.
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise ExecutorConfigError(path, f"expected {wanted}, got {type(value).__name__}")


def validate_executor_config(config: Any, *, container_name: str | None = None) -> dict[str, Any]:
    """Check that ``config`` is a valid set of RunTask overrides; raise ExecutorConfigError naming the field."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ExecutorConfigError(
            "", f"expected an object of RunTask parameters, got {type(config).__name__}"
        )
    for key, value in config.items():
        if key in _RESERVED_TOP_LEVEL:
            raise ExecutorConfigError(key, f"may not be overridden: {_RESERVED_TOP_LEVEL[key]}")
        if key not in _ALLOWED_TOP_LEVEL:
            raise ExecutorConfigError(
                key, f"is not a RunTask parameter; allowed: {', '.join(sorted(_ALLOWED_TOP_LEVEL))}"
            )
        _check_type(key, value, _ALLOWED_TOP_LEVEL[key])
    overrides = config.get("overrides")
    if overrides is not None:
        for key, value in overrides.items():
            if key not in _OVERRIDES_FIELDS:
                raise ExecutorConfigError(
                    f"overrides.{key}",
                    f"is not a task override; allowed: {', '.join(sorted(_OVERRIDES_FIELDS))}",
                )
            _check_type(f"overrides.{key}", value, _OVERRIDES_FIELDS[key])
        names: set[str] = set()
        for i, container in enumerate(overrides.get("containerOverrides", [])):
            path = f"overrides.containerOverrides[{i}]"
            _validate_container_override(path, container, container_name)
            if container["name"] in names:
                raise ExecutorConfigError(
                    f"{path}.name", f"container {container['name']!r} is overridden twice"
                )
            names.add(container["name"])
    for key in ("tags",):
        for i, tag in enumerate(config.get(key, [])):
            if (
                not isinstance(tag, Mapping)
                or not isinstance(tag.get("key"), str)
                or not isinstance(tag.get("value", ""), str)
            ):
                raise ExecutorConfigError(f"{key}[{i}]", 'expected {"key": string, "value": string}')
    for i, entry in enumerate(config.get("capacityProviderStrategy", [])):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("capacityProvider"), str):
            raise ExecutorConfigError(
                f"capacityProviderStrategy[{i}]", "expected an object with a string capacityProvider"
            )
    if "launchType" in config and "capacityProviderStrategy" in config:
        raise ExecutorConfigError(
            "launchType", "launchType and capacityProviderStrategy are mutually exclusive"
        )
    return dict(config)


def _validate_container_override(path: str, container: Any, container_name: str | None) -> None:
    _check_type(path, container, dict)
    if "name" not in container:
        raise ExecutorConfigError(f"{path}.name", "is required: it says which container the override is for")
    for key, value in container.items():
        if key not in _CONTAINER_OVERRIDE_FIELDS:
            raise ExecutorConfigError(
                f"{path}.{key}",
                f"is not a container override; allowed: {', '.join(sorted(_CONTAINER_OVERRIDE_FIELDS))}",
            )
        _check_type(f"{path}.{key}", value, _CONTAINER_OVERRIDE_FIELDS[key])
    if container_name is not None and container["name"] == container_name and "command" in container:
        raise ExecutorConfigError(
            f"{path}.command", "may not be overridden: the command is the Airflow workload"
        )
    for j, kv in enumerate(container.get("environment", [])):
        if (
            not isinstance(kv, Mapping)
            or not isinstance(kv.get("name"), str)
            or not isinstance(kv.get("value"), str)
        ):
            raise ExecutorConfigError(
                f"{path}.environment[{j}]", 'expected {"name": string, "value": string}'
            )


def overrides_size(overrides: Mapping[str, Any]) -> int:
    """Return how ECS counts the overrides against its limit: the compact JSON length."""
    return len(json.dumps(overrides, separators=(",", ":")))


def build_run_task_kwargs(
    config: LaunchConfig,
    *,
    launch_id: str,
    attempt: int,
    command: list[str],
    executor_config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Return the RunTask arguments for one attempt of one launch.

    Raises ExecutorConfigError for an invalid executor_config and OverridesTooLarge when the overrides exceed
    ECS's limit (the message names the limit and the size).
    """
    validate_executor_config(executor_config, container_name=config.container_name)
    kwargs = merge_dicts(config.base_kwargs(), dict(executor_config or {}))
    overrides = kwargs.setdefault("overrides", {})
    containers = overrides.setdefault("containerOverrides", [])
    ours = next((c for c in containers if c.get("name") == config.container_name), None)
    if ours is None:
        ours = {"name": config.container_name}
        containers.append(ours)
    ours["command"] = list(command)
    ours_env = {"AIRFLOW_IS_EXECUTOR_CONTAINER": "true", LAUNCH_ID_ENV: launch_id, ATTEMPT_ENV: str(attempt)}
    env = [kv for kv in ours.get("environment", []) if kv.get("name") not in ours_env]
    env.extend({"name": k, "value": v} for k, v in ours_env.items())
    ours["environment"] = env
    kwargs["startedBy"] = STARTED_BY
    kwargs["count"] = 1
    kwargs["clientToken"] = client_token(launch_id, attempt)
    size = overrides_size(overrides)
    if size > OVERRIDES_MAX_CHARS:
        raise OverridesTooLarge(
            "overrides",
            f"the task's overrides (command, environment and executor_config) are {size} characters; "
            f"ECS allows at most {OVERRIDES_MAX_CHARS}",
        )
    return kwargs
