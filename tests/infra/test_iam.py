"""Least privilege: the launcher, the status handler, the reconciler and the scheduler policy allow exactly what they need."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template

from infra.scheduler_access import (
    LOG_READER_LOG_ACTIONS,
    LOG_READER_TABLE_ACTIONS,
    SCHEDULER_LOG_ACTIONS,
    SCHEDULER_QUEUE_ACTIONS,
    SCHEDULER_TABLE_ACTIONS,
)
from tests.infra.conftest import InProcessSynth
from tests.infra.helpers import actions_of, logical_id, only, role_statements, statement_with

LAUNCHER = "airflow-ecs-launcher"
STATUS = "airflow-ecs-status"
RECONCILER = "airflow-ecs-reconciler"
OWN_LOGS_AND_TRACES = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


def _sub(value: Any) -> str:
    """Render a Fn::Join of literals and pseudo parameters as a readable string."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    if "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    separator, parts = value["Fn::Join"]
    return str(separator).join(_sub(p) for p in parts)


def test_launcher_may_do_exactly_its_job(template: Template) -> None:
    statements = role_statements(template, LAUNCHER)
    assert actions_of(statements) == OWN_LOGS_AND_TRACES | {
        "ecs:RunTask", "ecs:StopTask", "ecs:TagResource", "iam:PassRole",
        # Launcher.find_task: a launch past its deadline looks for the task an earlier delivery started.
        "ecs:ListTasks", "ecs:DescribeTasks",
        "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions",
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
        "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage",
        "sqs:GetQueueAttributes", "sqs:SendMessage", "events:PutEvents",
    }  # fmt: skip


def test_launcher_runs_only_the_worker_family_on_this_cluster(template: Template) -> None:
    statements = role_statements(template, LAUNCHER)
    cluster = logical_id(template, "AWS::ECS::Cluster")
    on_cluster = {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster, "Arn"]}}}
    run = statement_with(statements, "ecs:RunTask")
    families = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition"
    assert sorted(map(_sub, run["Resource"])) == [
        f"{families}/airflow-ecs-worker-derived-*",  # task definitions derived for per-task images
        f"{families}/airflow-ecs-worker:*",
    ]
    assert run["Condition"] == on_cluster
    stop = statement_with(statements, "ecs:StopTask")
    assert (
        _sub(stop["Resource"])
        == "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/airflow-ecs/*"
    )
    assert stop["Condition"] == on_cluster
    tag = statement_with(statements, "ecs:TagResource")
    assert tag["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}


def test_launcher_passes_only_the_worker_roles_to_ecs_tasks(template: Template) -> None:
    statement = statement_with(role_statements(template, LAUNCHER), "iam:PassRole")
    task_definition = only(template, "AWS::ECS::TaskDefinition")[1]["Properties"]
    roles = [task_definition["TaskRoleArn"], task_definition["ExecutionRoleArn"]]
    assert sorted(map(_sub, statement["Resource"])) == sorted(map(_sub, roles))
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_launcher_table_access_is_item_reads_and_writes_only(template: Template) -> None:
    # create_for_launch puts the item; claims, records and cancels update it; get reads it. No index query.
    statements = role_statements(template, LAUNCHER)
    table = logical_id(template, "AWS::DynamoDB::Table")
    items = statement_with(statements, "dynamodb:GetItem")
    assert sorted(items["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert items["Resource"] == {"Fn::GetAtt": [table, "Arn"]}


def test_launcher_sends_only_to_its_dead_letter_queue_and_publishes_only_to_the_project_bus(
    template: Template,
) -> None:
    statements = role_statements(template, LAUNCHER)
    dlq = statement_with(statements, "sqs:SendMessage")
    launch_queue = logical_id(template, "AWS::SQS::Queue", {"RedrivePolicy": {"maxReceiveCount": 50}})
    redrive_target = template.find_resources("AWS::SQS::Queue")[launch_queue]["Properties"]["RedrivePolicy"]
    assert dlq["Resource"] == redrive_target["deadLetterTargetArn"]
    consume = statement_with(statements, "sqs:ChangeMessageVisibility")
    assert consume["Resource"] == {"Fn::GetAtt": [launch_queue, "Arn"]}
    bus = logical_id(template, "AWS::Events::EventBus")
    assert statement_with(statements, "events:PutEvents")["Resource"] == {"Fn::GetAtt": [bus, "Arn"]}


def test_status_handler_may_only_read_and_update_items_and_publish_to_the_bus(template: Template) -> None:
    # StatusTracker reads the item (get: relaunch decisions) and applies events with conditional update_item;
    # it never creates an item, so no PutItem. EventBridge invokes it (no event source to consume); Lambda sends
    # a failed invocation's record to the on-failure destination with the function's role: SendMessage there only.
    statements = role_statements(template, STATUS)
    assert actions_of(statements) == OWN_LOGS_AND_TRACES | {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "events:PutEvents", "sqs:SendMessage",
    }  # fmt: skip
    status_fn = logical_id(template, "AWS::Lambda::Function", {"FunctionName": STATUS})
    _, config = only(template, "AWS::Lambda::EventInvokeConfig", {"FunctionName": {"Ref": status_fn}})
    send = statement_with(statements, "sqs:SendMessage")
    assert send["Resource"] == config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    table = logical_id(template, "AWS::DynamoDB::Table")
    items = statement_with(statements, "dynamodb:UpdateItem")
    assert sorted(items["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert items["Resource"] == {"Fn::GetAtt": [table, "Arn"]}
    bus = logical_id(template, "AWS::Events::EventBus")
    assert statement_with(statements, "events:PutEvents")["Resource"] == {"Fn::GetAtt": [bus, "Arn"]}


def test_reconciler_may_do_exactly_its_job(template: Template) -> None:
    statements = role_statements(template, RECONCILER)
    assert actions_of(statements) == OWN_LOGS_AND_TRACES | {
        "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:Query",
        "dynamodb:DeleteItem", "ecs:DescribeTasks", "ecs:ListTasks", "events:PutEvents",
        "ecs:ListTaskDefinitionFamilies", "ecs:ListTaskDefinitions", "ecs:DeregisterTaskDefinition",
        "sqs:ReceiveMessage", "sqs:DeleteMessage",  # the status function's failed events, replayed
    }  # fmt: skip


def test_reconciler_reads_only_the_stale_index_and_writes_items(template: Template) -> None:
    # get and conditional update_item (StatusTracker, fail_lost, touch), update_item of the heartbeat (it keeps
    # the launcher's and the status function's notes); it creates no item, so no PutItem; batch_get_item reads
    # the items the keys-only stale index names.
    # delete_item removes a derived task definition's registration before it is deregistered.
    statements = role_statements(template, RECONCILER)
    table = logical_id(template, "AWS::DynamoDB::Table")
    items = statement_with(statements, "dynamodb:UpdateItem")
    assert sorted(items["Action"]) == [
        "dynamodb:BatchGetItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    ]
    assert items["Resource"] == {"Fn::GetAtt": [table, "Arn"]}
    query = statement_with(statements, "dynamodb:Query")
    assert query["Action"] == "dynamodb:Query"
    assert _sub(query["Resource"]) == f"${{{table}.Arn}}/index/by_active_checked"


def test_reconciler_describes_only_this_clusters_tasks_and_publishes_only_to_the_project_bus(
    template: Template,
) -> None:
    statements = role_statements(template, RECONCILER)
    cluster = logical_id(template, "AWS::ECS::Cluster")
    describe = statement_with(statements, "ecs:DescribeTasks")
    assert describe["Action"] == "ecs:DescribeTasks"
    assert (
        _sub(describe["Resource"])
        == "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/airflow-ecs/*"
    )
    assert describe["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster, "Arn"]}}}
    listing = statement_with(statements, "ecs:ListTasks")
    assert listing["Action"] == "ecs:ListTasks"
    assert listing["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster, "Arn"]}}}
    bus = logical_id(template, "AWS::Events::EventBus")
    publish = statement_with(statements, "events:PutEvents")
    assert publish["Action"] == "events:PutEvents"
    assert publish["Resource"] == {"Fn::GetAtt": [bus, "Arn"]}


def test_reconciler_on_an_existing_cluster_describes_its_tasks(existing_synth: InProcessSynth) -> None:
    describe = statement_with(role_statements(existing_synth.template, RECONCILER), "ecs:DescribeTasks")
    assert _sub(describe["Resource"]) == "arn:aws:ecs:eu-west-1:123456789012:task/airflow-prod/*"
    assert describe["Condition"] == {
        "ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/airflow-prod"}
    }


def _managed_policy_statements(template: Template, description_starts: str) -> list[dict[str, Any]]:
    found = [
        p
        for p in template.find_resources("AWS::IAM::ManagedPolicy").values()
        if p["Properties"]["Description"].startswith(description_starts)
    ]
    assert len(found) == 1, (
        f"expected one managed policy described {description_starts!r}, found {len(found)}"
    )
    statements: list[dict[str, Any]] = found[0]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _scheduler_statements(template: Template) -> list[dict[str, Any]]:
    return _managed_policy_statements(template, "Airflow scheduler")


def _log_reader_statements(template: Template) -> list[dict[str, Any]]:
    return _managed_policy_statements(template, "Airflow API server")


def test_scheduler_policy_allows_nothing_beyond_send_table_reads_and_log_reads(template: Template) -> None:
    statements = _scheduler_statements(template)
    assert all(s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s for s in statements)
    assert actions_of(statements) == {
        "sqs:SendMessage",
        "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable",
        "logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams",
    }  # fmt: skip
    assert set(SCHEDULER_QUEUE_ACTIONS + SCHEDULER_TABLE_ACTIONS + SCHEDULER_LOG_ACTIONS) == actions_of(
        statements
    )
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any("*" in a for a in actions)


def test_scheduler_policy_resources_are_the_queue_the_table_and_the_task_log_group(
    template: Template,
) -> None:
    statements = _scheduler_statements(template)
    launch_queue = logical_id(template, "AWS::SQS::Queue", {"RedrivePolicy": {"maxReceiveCount": 50}})
    table = logical_id(template, "AWS::DynamoDB::Table")
    task_logs = only(template, "AWS::ECS::TaskDefinition")[1]["Properties"]["ContainerDefinitions"][0]
    log_group = task_logs["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert statement_with(statements, "sqs:SendMessage")["Resource"] == {"Fn::GetAtt": [launch_queue, "Arn"]}
    reads = statement_with(statements, "dynamodb:Query")["Resource"]
    assert [_sub(r) for r in reads] == [f"${{{table}.Arn}}", f"${{{table}.Arn}}/index/by_owner_changed"]
    assert statement_with(statements, "logs:GetLogEvents")["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}


def test_scheduler_policy_for_existing_resources_names_them(existing_synth: InProcessSynth) -> None:
    statements = _scheduler_statements(existing_synth.template)
    logs = statement_with(statements, "logs:FilterLogEvents")
    assert _sub(logs["Resource"]) == "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/airflow-worker:*"


def test_log_reader_policy_reads_one_record_and_the_task_logs_and_cannot_launch(template: Template) -> None:
    statements = _log_reader_statements(template)
    assert all(s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s for s in statements)
    assert actions_of(statements) == {"dynamodb:GetItem", "logs:GetLogEvents"}
    assert set(LOG_READER_TABLE_ACTIONS + LOG_READER_LOG_ACTIONS) == actions_of(statements)
    table = logical_id(template, "AWS::DynamoDB::Table")
    assert statement_with(statements, "dynamodb:GetItem")["Resource"] == {"Fn::GetAtt": [table, "Arn"]}
    task_logs = only(template, "AWS::ECS::TaskDefinition")[1]["Properties"]["ContainerDefinitions"][0]
    log_group = task_logs["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert statement_with(statements, "logs:GetLogEvents")["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
    reader_policy = logical_id(
        template, "AWS::IAM::ManagedPolicy", {"Description": Match.string_like_regexp("^Airflow API server")}
    )
    assert template.to_json()["Outputs"]["LogReaderPolicyArn"]["Value"] == {"Ref": reader_policy}


def test_log_reader_policy_for_existing_resources_names_them(existing_synth: InProcessSynth) -> None:
    statements = _log_reader_statements(existing_synth.template)
    logs = statement_with(statements, "logs:GetLogEvents")
    assert _sub(logs["Resource"]) == "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/airflow-worker:*"
