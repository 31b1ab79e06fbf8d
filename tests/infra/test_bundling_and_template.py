"""Packaging helpers and the in-process template API (no CLI, no bundling, no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aws_cdk import aws_logs as logs
from ecs_event_executor.control.tasks.schema import CHANGE_INDEX

from infra import bundling, bytecode
from infra.python_function import log_retention
from infra.template import synthesize_template


def test_powertools_version_comes_from_the_lock() -> None:
    lock = Path(bundling.LOCK_FILE).read_text()
    assert f"aws_lambda_powertools=={bundling.locked_version('aws-lambda-powertools')}" in lock
    assert bundling.locked_version("Aws_Lambda_Powertools") == bundling.locked_version(
        "aws-lambda-powertools"
    )


def test_dependency_cache_key_is_stable() -> None:
    key = bundling.dependencies_key()
    assert key == bundling.dependencies_key() and len(key) == 16


def test_source_digest_ignores_caches_and_follows_content(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("def handler(event, context): ...\n")
    first = bundling._tree_digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    assert bundling._tree_digest(tmp_path) == first
    (tmp_path / "handler.py").write_text("def handler(event, context): return 1\n")
    assert bundling._tree_digest(tmp_path) != first


def test_log_retention_maps_days_to_cloudwatch_values() -> None:
    assert log_retention(1) == logs.RetentionDays.ONE_DAY
    assert log_retention(30) == logs.RetentionDays.ONE_MONTH
    assert log_retention(365) == logs.RetentionDays.ONE_YEAR
    assert log_retention(3653) == logs.RetentionDays.TEN_YEARS


def test_synthesize_template_returns_plain_definitions_for_the_local_mode() -> None:
    template = synthesize_template(
        {"namePrefix": "local", "launcherMaxConcurrency": 3, "launcherMemoryMb": 256}
    )
    resources = template["Resources"].values()
    table = next(r for r in resources if r["Type"] == "AWS::DynamoDB::Table")["Properties"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == CHANGE_INDEX
    mapping = next(r for r in resources if r["Type"] == "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 3}
    rules = [r["Properties"] for r in resources if r["Type"] == "AWS::Events::Rule"]
    patterns = [rule["EventPattern"] for rule in rules if "EventPattern" in rule]
    assert {p["source"][0] for p in patterns} == {"aws.ecs", "airflow.ecs-event-executor"}
    # The reconciler's rule is a schedule, not a pattern.
    assert [rule["ScheduleExpression"] for rule in rules if "EventPattern" not in rule] == ["rate(5 minutes)"]
    names = {r["Properties"].get("FunctionName") for r in resources if r["Type"] == "AWS::Lambda::Function"}
    assert names == {"local-launcher", "local-status", "local-reconciler"}
    launcher = next(r for r in resources if r["Properties"].get("FunctionName") == "local-launcher")
    assert launcher["Properties"]["MemorySize"] == 256


def test_bytecode_python_is_one_that_reports_the_runtime_version(monkeypatch: Any) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    monkeypatch.delenv(bytecode.BYTECODE_PYTHON_VARIABLE, raising=False)
    assert bytecode.bytecode_python(running) == sys.executable
    # A Python that is not of the version (and a name that does not run) is never taken.
    monkeypatch.setenv(bytecode.BYTECODE_PYTHON_VARIABLE, "/nonexistent/python")
    assert bytecode.bytecode_python("2.1") is None


def test_bytecode_python_is_found_among_pyenv_versions(tmp_path: Path, monkeypatch: Any) -> None:
    """pyenv's shim on the PATH runs only the selected versions: an installed one is found under its root."""
    interpreter = tmp_path / "versions" / "9.9.1" / "bin" / "python9.9"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text("#!/bin/sh\necho 9.9\n")  # answers the version question as a Python 9.9 would
    interpreter.chmod(0o755)
    monkeypatch.delenv(bytecode.BYTECODE_PYTHON_VARIABLE, raising=False)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    assert bytecode.bytecode_python("9.9") == str(interpreter)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "elsewhere"))
    assert bytecode.bytecode_python("9.9") is None


def test_compiled_bytecode_is_used_although_the_sources_times_change(tmp_path: Path) -> None:
    """The asset zip keeps no source times: the bytecode must be trusted without them (unchecked-hash), or each
    cold start compiles the module again. Proven by changing the source after compiling: the import still runs
    the compiled module."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    package = tmp_path / "lambdas" / "probe"
    package.mkdir(parents=True)
    (package / "handler.py").write_text("ANSWER = 'compiled'\n")
    assert bytecode.compile_bytecode(tmp_path / "lambdas", sys.executable, running)
    (package / "handler.py").write_text("ANSWER = 'source'\n")
    os.utime(package / "handler.py", (0, 0))
    answer = subprocess.run(
        [sys.executable, "-B", "-c", "import lambdas.probe.handler as h; print(h.ANSWER)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert answer == "compiled"


def test_without_a_python_of_the_runtime_version_nothing_is_compiled(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "handler.py").write_text("ANSWER = 1\n")
    assert not bytecode.compile_bytecode(tmp_path, None, "3.12")
    assert not list(tmp_path.rglob("*.pyc"))
    bytecode._warn_sources_only.cache_clear()
    bytecode.compile_bytecode(tmp_path, None, "3.12")
    assert bytecode.BYTECODE_PYTHON_VARIABLE in capsys.readouterr().err
