"""The package is an Airflow provider: ``[ecs_event_executor]`` is declared (every key, default, description) from
the settings the executor reads, Airflow's own CLI lists it, docs/executor.md matches it, and a worker whose Airflow
differs from the scheduler's is warned about at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from unittest import mock

import jsonschema
import pytest
from airflow import __version__ as airflow_version
from ecs_event_executor.config import DEFAULTS, SECTION, ExecutorSettings, setting_keys
from ecs_event_executor.provider import PACKAGE_NAME, get_provider_info

from harness.docs import EXECUTOR_DOC, render
from tests.executor.conftest import AIRFLOW_VERSION, ExecutorEnv

pytestmark = pytest.mark.compat

VENV_BIN = Path(sys.executable).parent


def _options() -> dict[str, dict[str, object]]:
    return dict(get_provider_info()["config"][SECTION]["options"])


def test_provider_info_is_valid_for_airflow_and_names_the_executor() -> None:
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    # ProvidersManager refuses a provider whose package-name is not its distribution's name.
    assert info["package-name"] == metadata.metadata(PACKAGE_NAME)["Name"]
    assert info["executors"] == ["ecs_event_executor.EcsEventExecutor"]


def test_every_key_the_executor_reads_is_declared_with_its_default_and_a_description() -> None:
    options = _options()
    assert list(options) == list(setting_keys())
    for key, option in options.items():
        field = ExecutorSettings.model_fields[key]
        assert option["default"] == DEFAULTS.get(key), key
        assert isinstance(option["description"], str) and len(option["description"]) > 20, key
        assert option["example"] and option["version_added"], f"{key}: declare it with _key() in config.py"
        if not field.is_required() and field.default is not None:
            # The declared default is what the settings model falls back to.
            parsed = ExecutorSettings.model_validate(
                {"queue_url": "https://sqs.example/q", "table_name": "t", key: option["default"]}
            )
            assert getattr(parsed, key) == field.default, key
    assert options["check_health_on_startup"]["type"] == "boolean"
    assert options["max_run_task_attempts"]["type"] == "integer"
    assert options["sync_overlap_seconds"]["type"] == "float"
    assert options["region_name"]["type"] == "string"


def test_the_entry_point_makes_airflow_config_list_show_every_key_with_its_default(tmp_path: Path) -> None:
    entry_points = metadata.entry_points(group="apache_airflow_provider")
    assert any(ep.value == "ecs_event_executor.provider:get_provider_info" for ep in entry_points)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {
        "AIRFLOW_HOME": str(tmp_path)
    }
    result = subprocess.run(
        # 2.11 and 3.1 show the values without asking (--show-values came with 3.2).
        [
            str(VENV_BIN / "airflow"),
            "config",
            "list",
            "--section",
            SECTION,
            *(["--show-values"] if AIRFLOW_VERSION.release[:2] >= (3, 2) else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert f"[{SECTION}]" in lines
    for key in setting_keys():
        default = DEFAULTS.get(key)
        expected = f"{key} = {default}" if default is not None else f"# {key} = "
        assert expected in lines, f"{expected!r} not in:\n{result.stdout}"
    # Declaring a (empty) CLI section keeps Airflow from importing the executor to look for commands.
    assert "missing 'cli' section" not in result.stdout + result.stderr


def test_docs_table_is_generated_from_the_provider_config() -> None:
    current = EXECUTOR_DOC.read_text()
    assert render(current) == current, "docs/executor.md is out of date: run python -m harness.docs"
    for key in setting_keys():
        assert f"| `{key}` |" in current


def _start_warnings(env: ExecutorEnv) -> list[str]:
    """Start an executor and return the warnings it logged (Airflow's structlog logger, replaced by a mock)."""
    executor = env.executor(start=False)
    executor._log = mock.Mock()
    executor.start()
    return [call.args[0] % call.args[1:] for call in executor._log.warning.call_args_list]


def test_start_warns_when_the_workers_run_another_airflow_version(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__WORKER_AIRFLOW_VERSION", "2.11.0")
    warnings = _start_warnings(executor_env)
    assert any("Airflow 2.11.0" in w and f"Airflow {airflow_version}" in w for w in warnings), warnings


@pytest.mark.parametrize("worker_version", [airflow_version, None])
def test_start_does_not_warn_for_the_same_or_an_unknown_worker_version(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch, worker_version: str | None
) -> None:
    if worker_version is not None:
        monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__WORKER_AIRFLOW_VERSION", worker_version)
    assert not [w for w in _start_warnings(executor_env) if "worker image runs Airflow" in w]
