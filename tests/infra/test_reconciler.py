"""The reconciler: a schedule, one pass at a time, the environment its handler parses, its alarms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template
from ecs_event_executor.control.reconciling import ReconcilerSettings

from infra.python_function import METRICS_NAMESPACE
from infra.reconciler import LOST_METRIC, METRICS, METRICS_SERVICE
from tests.infra.conftest import InProcessSynth
from tests.infra.helpers import function, logical_id, only

RECONCILER = "airflow-ecs-reconciler"


def _schedule_rule(template: Template) -> dict[str, Any]:
    rules = template.find_resources("AWS::Events::Rule")
    (rule,) = [r["Properties"] for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    return rule


def test_runs_every_five_minutes_by_default_targeting_the_reconciler(template: Template) -> None:
    rule = _schedule_rule(template)
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert "EventPattern" not in rule and "EventBusName" not in rule
    (target,) = rule["Targets"]
    reconciler = logical_id(template, "AWS::Lambda::Function", {"FunctionName": RECONCILER})
    assert target["Arn"] == {"Fn::GetAtt": [reconciler, "Arn"]}
    # A delivery older than one period is pointless: the next pass is already due.
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 300
    rule_id = logical_id(template, "AWS::Events::Rule", {"ScheduleExpression": "rate(5 minutes)"})
    invoke = {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": [reconciler, "Arn"]},
        "Principal": "events.amazonaws.com",
        "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
    }
    template.has_resource_properties("AWS::Lambda::Permission", invoke)


def test_one_pass_at_a_time_within_the_period_and_no_async_retries(template: Template) -> None:
    props = function(template, RECONCILER)["Properties"]
    assert props["ReservedConcurrentExecutions"] == 1
    assert props["Timeout"] <= 300
    reconciler = logical_id(template, "AWS::Lambda::Function", {"FunctionName": RECONCILER})
    _, config = only(template, "AWS::Lambda::EventInvokeConfig", {"FunctionName": {"Ref": reconciler}})
    assert config["Properties"]["MaximumRetryAttempts"] == 0
    assert config["Properties"]["MaximumEventAgeInSeconds"] == 300


def test_environment_is_accepted_by_the_reconcilers_own_parser(template: Template) -> None:
    env = function(template, RECONCILER)["Properties"]["Environment"]["Variables"]
    assert {
        "TASKS_TABLE_NAME", "CONTAINER_NAME", "CLUSTER", "EVENT_BUS_NAME", "STALE_AFTER_SECONDS",
        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL",
    } <= set(env)  # fmt: skip
    assert not {"SUBNETS", "LAUNCH_QUEUE_URL", "RUN_TASK_KWARGS"} & set(env)
    # The worker task definition: the families derived from it for per-task images are cleaned up after
    # DERIVED_TASK_DEFINITION_UNUSED_DAYS unused.
    assert env["DERIVED_TASK_DEFINITION_UNUSED_DAYS"] == "14" and "TASK_DEFINITION" in env
    cluster = logical_id(template, "AWS::ECS::Cluster")
    table = logical_id(template, "AWS::DynamoDB::Table")
    bus = logical_id(template, "AWS::Events::EventBus")
    assert env["CLUSTER"] == {"Fn::GetAtt": [cluster, "Arn"]}
    assert env["TASKS_TABLE_NAME"] == {"Ref": table}
    assert env["EVENT_BUS_NAME"] == {"Ref": bus}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
    plain = {k: v if isinstance(v, str) else f"resolved-{k.lower()}" for k, v in env.items()}
    settings = ReconcilerSettings.from_env(plain)
    assert settings.stale_after_seconds == 600
    assert settings.status.container_name == "base"
    assert settings.derived_unused_days == 14 and settings.base_families


def test_settings_change_the_schedule_and_the_stale_age(existing_synth: InProcessSynth) -> None:
    template = existing_synth.template  # reconcileEveryMinutes: 2, reconcileStaleAfterSeconds: 900
    assert _schedule_rule(template)["ScheduleExpression"] == "rate(2 minutes)"
    props = function(template, RECONCILER)["Properties"]
    assert props["Environment"]["Variables"]["STALE_AFTER_SECONDS"] == "900"
    assert props["Timeout"] == 120  # within the period
    _, lost = only(template, "AWS::CloudWatch::Alarm", {"MetricName": LOST_METRIC})
    assert lost["Properties"]["Period"] == 120


def test_alarms_on_errors_and_on_lost_tasks(template: Template) -> None:
    reconciler = logical_id(template, "AWS::Lambda::Function", {"FunctionName": RECONCILER})
    topic = logical_id(template, "AWS::SNS::Topic")
    _, errors = only(template, "AWS::CloudWatch::Alarm", {"AlarmName": "airflow-ecs-reconciler-errors"})
    props = errors["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": reconciler}}]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    _, lost = only(template, "AWS::CloudWatch::Alarm", {"AlarmName": "airflow-ecs-reconciler-lost-tasks"})
    props = lost["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        METRICS_NAMESPACE,
        LOST_METRIC,
        "Sum",
    )
    assert props["Dimensions"] == [{"Name": "service", "Value": METRICS_SERVICE}]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert props["Period"] == 300  # one pass per period: one data point each
    assert props["TreatMissingData"] == "notBreaching"
    for alarm in (errors, lost):
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]


def test_dashboard_shows_the_reconciler(template: Template) -> None:
    _, dashboard = only(template, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for name in METRICS:
        assert name in body
    assert "reconciler Lambda" in body
    reconciler = logical_id(template, "AWS::Lambda::Function", {"FunctionName": RECONCILER})
    assert reconciler in body  # its invocations, errors, throttles and duration
    for name in ("airflow-ecs-reconciler-errors", "airflow-ecs-reconciler-lost-tasks"):
        alarm = logical_id(template, "AWS::CloudWatch::Alarm", {"AlarmName": name})
        assert alarm in body  # the alarm status widget lists it


def test_metric_names_and_service_match_the_handler() -> None:
    """The alarm watches what the handler emits: its Powertools namespace default, service and metric names."""
    from lambdas.reconciler import handler

    assert handler.metrics.service == METRICS_SERVICE
    assert handler.metrics.namespace == METRICS_NAMESPACE
    source = Path(handler.__file__).read_text()
    assert 'f"Reconciled{name.capitalize()}"' in source
    kinds = ("checked", "updated", "lost", "relaunched")
    assert all(f'"{kind}"' in source for kind in kinds)
    assert tuple(f"Reconciled{k.capitalize()}" for k in kinds) == METRICS


@pytest.mark.parametrize("name", ["ReconciledNothing", "Errors"])
def test_unknown_metric_is_refused(default_synth: InProcessSynth, name: str) -> None:
    with pytest.raises(ValueError, match="the reconciler emits"):
        default_synth.stack.reconciler.metric(name)
