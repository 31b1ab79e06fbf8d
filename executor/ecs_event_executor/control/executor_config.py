"""What a task's ``executor_config`` may hold, checked without a launch configuration.

``executor_config`` holds RunTask parameters that are merged over the launcher's configuration. The rules here
know only the container the control plane runs the workload in and ECS's limits: which parameters a task may
override (not the command, the container name, the client token, ``startedBy`` or ``count``), their JSON types,
one override per container, and the 8192 characters ECS allows for the overrides. The executor checks a task's
config when it is queued (``check_executor_config``), the launcher again when it builds RunTask's arguments, and
the stack checks ``runTaskKwargs`` (the launcher's ``RUN_TASK_KWARGS``) with the same rules, so a bad value fails
early, naming the field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY

# ECS limit: the JSON of `overrides` may hold at most 8192 characters, formatting included.
OVERRIDES_MAX_CHARS = 8192
# A launch id as long as the launch message allows: the size check at queue time counts the longest environment.
LONGEST_LAUNCH_ID = "0" * 56


class ExecutorConfigError(ValueError):
    """A task's executor_config is not a valid set of RunTask overrides; the message names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field_path = field_path
        super().__init__(
            f"executor_config.{field_path}: {problem}" if field_path else f"executor_config: {problem}"
        )


class OverridesTooLarge(ExecutorConfigError):
    """The container overrides exceed ECS's 8192-character limit."""


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


def set_workload(
    overrides: dict[str, Any], *, container_name: str, launch_id: str, attempt: int, command: list[str]
) -> None:
    """Put the workload into ``overrides``: our container's command and the marks its ECS events carry."""
    containers = overrides.setdefault("containerOverrides", [])
    ours = next((c for c in containers if c.get("name") == container_name), None)
    if ours is None:
        ours = {"name": container_name}
        containers.append(ours)
    ours["command"] = list(command)
    marks = {"AIRFLOW_IS_EXECUTOR_CONTAINER": "true", LAUNCH_ID_ENV: launch_id, ATTEMPT_ENV: str(attempt)}
    env = [kv for kv in ours.get("environment", []) if kv.get("name") not in marks]
    env.extend({"name": k, "value": v} for k, v in marks.items())
    ours["environment"] = env


def check_overrides_size(overrides: Mapping[str, Any]) -> None:
    """Raise OverridesTooLarge when ``overrides`` exceed what ECS accepts, naming the limit and the size."""
    size = overrides_size(overrides)
    if size > OVERRIDES_MAX_CHARS:
        raise OverridesTooLarge(
            "overrides",
            f"the task's overrides (command, environment and executor_config) are {size} characters; "
            f"ECS allows at most {OVERRIDES_MAX_CHARS}",
        )


def check_executor_config(
    config: Any, *, container_name: str, command: list[str], max_attempts: int
) -> dict[str, Any]:
    """Check a task's executor_config as its launch will apply it, at its longest; return it as a dict.

    The size budget is measured with the workload's command and the longest marks a launch can carry (the
    longest launch id, the last attempt); the launcher's own RUN_TASK_KWARGS are its business and not counted.
    """
    checked = validate_executor_config(config, container_name=container_name)
    overrides = copy.deepcopy(dict(checked.get("overrides") or {}))
    set_workload(
        overrides,
        container_name=container_name,
        launch_id=LONGEST_LAUNCH_ID,
        attempt=max_attempts,
        command=command,
    )
    check_overrides_size(overrides)
    return checked
