"""What a task's ``executor_config`` may hold, checked without a launch configuration.

``executor_config`` holds RunTask parameters that are merged over the launcher's configuration. The rules here
know only the container the control plane runs the workload in and ECS's limits: which parameters a task may
override (not the command, the container name, the client token, ``startedBy`` or ``count``), their types,
nesting and limits as botocore's own ECS service model states them (no table of ours), one override per
container, and the 8192 characters ECS allows for the overrides. The executor checks a task's
config when it is queued (``check_executor_config``), the launcher again when it builds RunTask's arguments, and
the stack checks ``runTaskKwargs`` (the launcher's ``RUN_TASK_KWARGS``) with the same rules, so a bad value fails
early, naming the field.

One key is the control plane's own, not RunTask's: ``image`` runs the task's Airflow container on another image (a
task definition derived from the launch profile's, registered on demand). Only images an allow-list matches are
accepted (``image_allowed``; the executor's ``allowed_images``, the launcher's ``ALLOWED_IMAGES``; by default the
account's own ECR repositories). Every task is tagged for cost attribution (``cost_tags``), and the tags a task's
config adds are counted with them against ECS's limits when it is queued.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.model import ListShape, Shape, StructureShape
from botocore.validate import ParamValidator

from ecs_event_executor.control import aws_clients
from ecs_event_executor.control.ecs_state import ATTEMPT_ENV, LAUNCH_ID_ENV, STARTED_BY
from ecs_event_executor.control.messages import TaskKey

# The control plane's marks on the Airflow container (LAUNCH_ID_ENV, ATTEMPT_ENV): no container's override
# environment in an executor_config may set a name with this prefix.
RESERVED_ENV_PREFIX = "AIRFLOW_ECS_EVENT_"

# ECS limit: the JSON of `overrides` may hold at most 8192 characters, formatting included.
OVERRIDES_MAX_CHARS = 8192
# A launch id as long as the launch message allows: the size check at queue time counts the longest environment.
LONGEST_LAUNCH_ID = "0" * 56


# The control plane's own executor_config key: the image of the Airflow container for this task.
IMAGE_KEY = "image"
# ECS tag rules: keys at most 128 characters, values 256; letters, digits, spaces and + - = . _ : / @.
TAG_KEY_MAX_CHARS = 128
TAG_VALUE_MAX_CHARS = 256
_TAG_FORBIDDEN = re.compile(r"[^\w\s+\-=.:/@]")
# The cost-attribution tags every ECS task carries (Cost Explorer groups by them once they are activated as
# cost allocation tags).
COST_TAG_KEYS = {
    "dag_id": "airflow:dag_id",
    "task_id": "airflow:task_id",
    "run_id": "airflow:run_id",
    "try_number": "airflow:try_number",
    "team": "airflow:team",
}
# An image reference: registry/repository[:tag][@digest], nothing a shell or a URL would add.
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._:/@-]{0,254}$", re.IGNORECASE)


class ExecutorConfigError(ValueError):
    """A task's executor_config is not a valid set of RunTask overrides; the message names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field_path = field_path
        super().__init__(
            f"executor_config.{field_path}: {problem}" if field_path else f"executor_config: {problem}"
        )


class OverridesTooLarge(ExecutorConfigError):
    """The container overrides exceed ECS's 8192-character limit."""


# Set by the control plane: overriding them would break idempotency, event routing or the task's identity.
_RESERVED_TOP_LEVEL = {
    "command": "the command is the Airflow workload and is set by the executor",
    "name": "the container name is set by the launch configuration",
    "clientToken": "the launcher derives it from the task key, try number and attempt",
    "startedBy": f"the control plane marks its tasks with startedBy={STARTED_BY!r}",
    "count": "one task instance is one ECS task",
}
# RunTask requires a task definition; the launcher's configuration always supplies one, so a config that does not
# name its own is checked with this stand-in.
_TASK_DEFINITION_STAND_IN = "the-launchers-task-definition"
# How botocore's parameter validator names the field in the problems it reports: "Missing required parameter in
# <path>: "<name>"", "Unknown parameter in <path>: "<name>", ...", "Invalid type for parameter <path>, ...".
_MEMBER_IN_REPORT = re.compile(r'parameter in ([^\s:]+): "([^"]+)"')
_FIELD_IN_REPORT = re.compile(r"for parameter ([^,\s]+)")


def _field_of(problem: str) -> str:
    member = _MEMBER_IN_REPORT.search(problem)
    if member:
        parent, name = member.groups()
        return name if parent == "input" else f"{parent}.{name}"
    found = _FIELD_IN_REPORT.search(problem)
    return found.group(1) if found else ""


@functools.lru_cache(maxsize=1)
def run_task_input_shape() -> Shape:
    """Return botocore's own model of ECS RunTask's input (the source of every type, nesting and limit)."""
    # The clients' session: in a Lambda the model the ECS client already loaded (trimmed, parsed once).
    return aws_clients.service_model("ecs").operation_model("RunTask").input_shape


def validate_run_task_parameters(params: Mapping[str, Any], *, prefix: str = "") -> None:
    """Check RunTask parameters against botocore's ECS service model: names, types, nesting, enums, required
    members, lengths and list sizes. Raise ExecutorConfigError naming the first wrong field."""
    shape = run_task_input_shape()
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        problems = report.generate_report().splitlines()[1:] or [report.generate_report()]
        raise ExecutorConfigError(prefix + _field_of(problems[0]), "; ".join(problems))
    _check_model_limits(params, shape, prefix)


def _check_model_limits(value: Any, shape: Shape, path: str) -> None:
    """Check what the model states and botocore's validator leaves to the service: ``max`` limits (tags: 50 a
    task, keys 128 characters, values 256) and enumerations (a launch type, a placement constraint type)."""
    if isinstance(value, str) and shape.enum and value not in shape.enum:
        raise ExecutorConfigError(path, f"is {value!r}; ECS accepts {', '.join(map(repr, shape.enum))}")
    limit = shape.metadata.get("max")
    if limit is not None:
        size = len(value) if isinstance(value, str | list | Mapping) else value
        if isinstance(size, int) and not isinstance(size, bool) and size > limit:
            what = "items" if isinstance(value, list) else "characters" if isinstance(value, str) else ""
            raise ExecutorConfigError(
                path, f"is {size}{' ' + what if what else ''}; ECS allows at most {limit}"
            )
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        for name, member in shape.members.items():
            if name in value:
                _check_model_limits(value[name], member, f"{path}.{name}" if path else name)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for i, entry in enumerate(value):
            _check_model_limits(entry, shape.member, f"{path}[{i}]")


def validate_executor_config(config: Any, *, container_name: str | None = None) -> dict[str, Any]:
    """Check that ``config`` is a valid set of RunTask overrides; raise ExecutorConfigError naming the field.

    Types, nesting and limits come from botocore's ECS service model; the rules here are the control plane's
    own: what a task may not override, and one override per container.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ExecutorConfigError(
            "", f"expected an object of RunTask parameters, got {type(config).__name__}"
        )
    for key in config:
        if key in _RESERVED_TOP_LEVEL:
            raise ExecutorConfigError(key, f"may not be overridden: {_RESERVED_TOP_LEVEL[key]}")
    if IMAGE_KEY in config:
        image = config[IMAGE_KEY]
        if not isinstance(image, str) or not _IMAGE.match(image):
            raise ExecutorConfigError(
                IMAGE_KEY,
                f"expected an image reference (registry/repository:tag or @digest), got {image!r:.80}",
            )
    validate_run_task_parameters({"taskDefinition": _TASK_DEFINITION_STAND_IN, **run_task_parameters(config)})
    overrides = config.get("overrides") or {}
    names: set[str] = set()
    for i, container in enumerate(overrides.get("containerOverrides", [])):
        path = f"overrides.containerOverrides[{i}]"
        if "name" not in container:
            raise ExecutorConfigError(
                f"{path}.name", "is required: it says which container the override is for"
            )
        if container_name is not None and container["name"] == container_name and "command" in container:
            raise ExecutorConfigError(
                f"{path}.command", "may not be overridden: the command is the Airflow workload"
            )
        if container["name"] in names:
            raise ExecutorConfigError(f"{path}.name", f"container {container['name']!r} is overridden twice")
        names.add(container["name"])
        for j, kv in enumerate(container.get("environment", [])):
            if kv["name"].startswith(RESERVED_ENV_PREFIX):
                raise ExecutorConfigError(
                    f"{path}.environment[{j}].name",
                    f"{kv['name'][:60]!r} may not be set: {RESERVED_ENV_PREFIX}* names are the control "
                    "plane's marks that bind a task's ECS events to its launch",
                )
    if "launchType" in config and "capacityProviderStrategy" in config:
        raise ExecutorConfigError(
            "launchType", "launchType and capacityProviderStrategy are mutually exclusive"
        )
    return dict(config)


def run_task_parameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the RunTask parameters of an executor_config: everything but the control plane's own keys."""
    return {k: v for k, v in config.items() if k != IMAGE_KEY}


def image_allowed(image: str, allowed: Sequence[str]) -> bool:
    """Return whether ``image`` matches one of the ``allowed`` patterns (shell-style: ``*`` matches anything)."""
    return any(fnmatch.fnmatchcase(image, pattern) for pattern in allowed)


def account_ecr_pattern(account: str, region: str) -> str:
    """Return the pattern of every image in one account's ECR repositories in one region (the default allow-list)."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com/*"


def check_image(config: Mapping[str, Any] | None, allowed: Sequence[str], *, setting: str) -> str | None:
    """Return the image a task's config names (None: the task definition's own); raise ExecutorConfigError,
    naming ``setting``, when no pattern of ``allowed`` matches it."""
    image = (config or {}).get(IMAGE_KEY)
    if image is None:
        return None
    if not image_allowed(str(image), allowed):
        shown = ", ".join(allowed) if allowed else "nothing"
        raise ExecutorConfigError(
            IMAGE_KEY, f"{str(image)[:200]!r} is not allowed by {setting} (allowed: {shown})"
        )
    return str(image)


def _tag_text(value: str, limit: int) -> str:
    cleaned = _TAG_FORBIDDEN.sub("_", value)
    if cleaned.lower().startswith("aws:"):
        # ECS reserves the aws: prefix for its own tags.
        cleaned = "_" + cleaned
    return cleaned[:limit]


def cost_tags(key: TaskKey, team: str | None) -> list[dict[str, str]]:
    """Return the ECS tags that attribute a task's cost: its dag, task, run, try and team, sanitized to ECS's
    tag rules (allowed characters, lengths); no team tag for a task without a team."""
    values = {
        "dag_id": key.dag_id,
        "task_id": key.task_id,
        "run_id": key.run_id,
        "try_number": str(key.try_number),
        "team": team,
    }
    return [
        {
            "key": _tag_text(COST_TAG_KEYS[name], TAG_KEY_MAX_CHARS),
            "value": _tag_text(value, TAG_VALUE_MAX_CHARS),
        }
        for name, value in values.items()
        if value is not None
    ]


def with_cost_tags(
    tags: Sequence[Mapping[str, str]] | None, cost: Sequence[Mapping[str, str]]
) -> list[dict[str, str]]:
    """Return ``tags`` with the cost tags added; a cost tag replaces a tag of the same key."""
    ours = {t["key"] for t in cost}
    return [dict(t) for t in tags or [] if t.get("key") not in ours] + [dict(t) for t in cost]


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
    config: Any,
    *,
    container_name: str,
    command: list[str],
    max_attempts: int,
    key: TaskKey | None = None,
    team: str | None = None,
    allowed_images: Sequence[str] = (),
    images_setting: str = "the allowed images",
) -> dict[str, Any]:
    """Check a task's executor_config as its launch will apply it, at its longest; return it as a dict.

    The size budget is measured with the workload's command and the longest marks a launch can carry (the
    longest launch id, the last attempt); the tags with the cost tags of ``key`` added; an image against
    ``allowed_images`` (the refusal names ``images_setting``). The launcher's own RUN_TASK_KWARGS are its
    business and not counted.
    """
    checked = validate_executor_config(config, container_name=container_name)
    check_image(checked, allowed_images, setting=images_setting)
    if key is not None:
        tags = with_cost_tags(checked.get("tags"), cost_tags(key, team))
        validate_run_task_parameters({"taskDefinition": _TASK_DEFINITION_STAND_IN, "tags": tags})
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
