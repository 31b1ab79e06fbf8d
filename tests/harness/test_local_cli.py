"""The local mode's command line: ``--dags-folder`` and ``--airflow-config`` on ``up`` and ``demo``, which DAGs
``demo`` runs, and no Node.js end-of-life banner when the CDK app is loaded outside make."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import REPO_ROOT
from harness.local import cli
from harness.local.postgres import sqlalchemy_url
from harness.local.runner import workload_ti
from harness.local.stack import EXAMPLES, LocalStack, StackOptions

NODE_BANNER = "end-of-life"


@pytest.mark.parametrize("command", ["up", "demo"])
def test_dags_folder_and_airflow_config_reach_the_stack_options(command: str, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def capture(args: object) -> int:
        seen["options"] = cli.stack_options(args)  # type: ignore[arg-type]
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, command, capture)
        patch.setattr(cli, "stop_on_sigterm", lambda: None)
        code = cli.main(
            [
                command,
                "--dags-folder",
                str(tmp_path),
                "--airflow-config",
                "core.parallelism=8",
                "--airflow-config",
                "AIRFLOW__MY_SECTION__FLAG=a=b",
            ]
        )
    assert code == 0
    options = seen["options"]
    assert options.dags_folder == tmp_path.resolve()
    assert options.airflow_config == {"AIRFLOW__CORE__PARALLELISM": "8", "AIRFLOW__MY_SECTION__FLAG": "a=b"}


def test_the_default_dags_folder_is_the_examples() -> None:
    seen: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "up", lambda args: seen.setdefault("args", args) and 0)
        patch.setattr(cli, "stop_on_sigterm", lambda: None)
        cli.main(["up"])
    assert seen["args"].dags_folder == EXAMPLES
    assert seen["args"].airflow_config == {}


def test_airflow_venv_reaches_the_stack_options_and_defaults_to_this_one(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "demo", lambda args: seen.setdefault("args", args) and 0)
        patch.setattr(cli, "stop_on_sigterm", lambda: None)
        cli.main(["demo", "--airflow-venv", str(tmp_path)])
        assert cli.stack_options(seen.pop("args")).airflow_venv == tmp_path.resolve()
        cli.main(["demo"])
        assert cli.stack_options(seen["args"]).airflow_venv is None


def test_the_runner_journals_the_task_instance_of_an_airflow_2_command() -> None:
    command = [
        "airflow",
        "tasks",
        "run",
        "d",
        "t",
        "r",
        "--local",
        "--map-index",
        "2",
        "--subdir",
        "/dags/x.py",
    ]
    assert workload_ti(command) == {
        "dag_id": "d",
        "task_id": "t",
        "run_id": "r",
        "map_index": 2,
        "try_number": None,
    }
    assert workload_ti(command[:7])["map_index"] == -1
    assert workload_ti([*command[:7], "--map-index"])["map_index"] == -1  # malformed: no index, no error
    assert workload_ti(["sh", "-c", "true"]) == {}


def test_the_printed_cli_environment_masks_the_database_url_and_the_signing_secrets(tmp_path: Path) -> None:
    stack = LocalStack(StackOptions(state_dir=tmp_path))
    secrets = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://postgres:@/airflow?host=/tmp/pg",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret-value",
        "AIRFLOW__WEBSERVER__SECRET_KEY": "session-secret-value",
    }
    stack.airflow_env = {"AIRFLOW_HOME": "/home", **secrets}
    printed = "\n".join(stack.cli_environment_lines(reveal_secrets=False))
    assert "AIRFLOW_HOME=/home" in printed
    for name, value in secrets.items():
        assert f"{name}=" in printed and value not in printed, name
    # The file the CLI sources has them (owner-only).
    written = stack.write_cli_environment()
    assert all(value in written.read_text() for value in secrets.values())
    assert written.stat().st_mode & 0o077 == 0


def test_the_embedded_postgres_url_names_airflows_driver() -> None:
    url = sqlalchemy_url("postgresql://postgres:@/airflow?host=/tmp/pg")
    assert url == "postgresql+psycopg2://postgres:@/airflow?host=/tmp/pg"
    with pytest.raises(ValueError):
        sqlalchemy_url("sqlite:///x.db")


@pytest.mark.parametrize("value", ["parallelism=8", "core=8", "=8", "core.parallelism", "a.b.c=1"])
def test_a_malformed_airflow_config_fails_naming_it(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["up", "--airflow-config", value])
    assert exit_info.value.code == 2
    assert repr(value) in capsys.readouterr().err


def test_a_missing_dags_folder_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--dags-folder", str(tmp_path / "nope")])
    assert "nope" in capsys.readouterr().err


def test_demo_runs_the_dags_that_declare_an_id_or_the_ones_named(tmp_path: Path) -> None:
    (tmp_path / "checked.py").write_text('DAG_ID = "checked"\nEXPECTED = {"a": "success", "b": "failed"}\n')
    (tmp_path / "plain.py").write_text('DAG_ID = "plain"\n')
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "broken.py").write_text("def (\n")
    assert cli.demo_dags(tmp_path) == [("checked", {"a": "success", "b": "failed"}), ("plain", {})]
    assert cli.demo_dags(tmp_path, ["other", "checked"]) == [
        ("other", {}),
        ("checked", {"a": "success", "b": "failed"}),
    ]
    assert cli.demo_dags(EXAMPLES) == [cli.expected_states()]


def test_loading_the_cdk_app_prints_no_node_end_of_life_banner() -> None:
    # As run outside make (python -m harness.local, a test run): nothing in the environment silences jsii. The
    # infra package loads first wherever the app is built (app.py, infra.template); constructs is the smallest
    # jsii module, and starting Node for it is what prints the banner.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSII_")}
    result = subprocess.run(
        [sys.executable, "-c", "import infra, constructs; constructs.Construct; print('loaded')"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert "loaded" in result.stdout
    assert NODE_BANNER not in result.stdout + result.stderr, result.stderr
