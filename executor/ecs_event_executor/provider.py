"""Register the package with Airflow as a provider: its executor and its ``[ecs_event_executor]`` section.

Airflow finds ``get_provider_info`` through the ``apache_airflow_provider`` entry point (pyproject.toml), so
``airflow config list`` shows every key with its default and description, and ``airflow providers list`` shows
the package. The keys come from ``ExecutorSettings``, the one place the executor reads them; nothing here imports
Airflow, because Airflow calls this while it discovers providers.
"""

from __future__ import annotations

import types
from importlib import metadata
from typing import Any, Union, get_args, get_origin

from ecs_event_executor.config import SECTION, ExecutorSettings, default_text, setting_keys

PACKAGE_NAME = "airflow-ecs-event-executor"
EXECUTOR = "ecs_event_executor.EcsEventExecutor"
SECTION_DESCRIPTION = (
    "Settings of EcsEventExecutor (``[core] executor = ecs_event_executor.EcsEventExecutor``). The stack's "
    "outputs print the values of queue_url, table_name, region_name, log_group, log_stream_prefix, "
    "container_name and worker_airflow_version. Launch settings (cluster, task definition, network, "
    "run_task_kwargs) live in the stack's settings, not here.\n"
)


def _config_type(annotation: Any) -> str:
    """Return the Airflow option type of a field's annotation (``str | None`` is a string)."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return {bool: "boolean", int: "integer", float: "float"}.get(annotation, "string")


def config_options() -> dict[str, dict[str, Any]]:
    """Return the ``[ecs_event_executor]`` options as Airflow's provider schema declares them."""
    options: dict[str, dict[str, Any]] = {}
    for key in setting_keys():
        field = ExecutorSettings.model_fields[key]
        # A key declared without _key() still lists (Airflow calls this while it discovers providers, so it must
        # not raise); tests/executor/test_provider.py fails until it has a description and an example.
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        options[key] = {
            "description": f"{field.description or ''}\n",
            "version_added": extra.get("version_added"),
            "type": _config_type(field.annotation),
            "example": extra.get("example"),
            "default": default_text(field.default),
        }
    return options


def _version() -> str:
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree without an install
        return "0.0.0"


def get_cli_commands() -> list[Any]:
    """Return the executor's ``airflow`` CLI commands: none (the operator CLI is ``ecs-event-executor``)."""
    return []


def get_provider_info() -> dict[str, Any]:
    """Return the provider's description for Airflow's ProvidersManager."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "ECS event executor",
        "description": (
            "Runs each Airflow task as an Amazon ECS task through an event-driven serverless control plane "
            "(SQS, Lambda, EventBridge, DynamoDB).\n"
        ),
        "versions": [_version()],
        "executors": [EXECUTOR],
        # Airflow asks each executor's provider for CLI commands; declaring none spares it importing the executor.
        "cli": ["ecs_event_executor.provider.get_cli_commands"],
        "config": {SECTION: {"description": SECTION_DESCRIPTION, "options": config_options()}},
    }
