"""Packaging helpers and the in-process template API (no CLI, no bundling, no network)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_logs as logs
from ecs_event_executor.control.tasks.schema import CHANGE_INDEX

from infra import bundling
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
