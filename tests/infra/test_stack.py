"""Template assertions on the default stack (new VPC, cluster and task definition): properties, not logical ids."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template
from ecs_event_executor.control.bus import RELAUNCH_REQUESTED, SOURCE
from ecs_event_executor.control.ecs_state import STARTED_BY
from ecs_event_executor.control.launching import LauncherSettings
from ecs_event_executor.control.run_task import LaunchConfig
from ecs_event_executor.control.status_tracking import StatusSettings
from ecs_event_executor.control.tasks.schema import Attr, table_definition

from infra.launcher import LAUNCHER_TIMEOUT, MAX_RECEIVE_COUNT
from tests.infra.helpers import function, logical_id, only

LAUNCHER = "airflow-ecs-launcher"
STATUS = "airflow-ecs-status"
RECONCILER = "airflow-ecs-reconciler"


def launch_queue_id(template: Template) -> str:
    """Return the queue the launcher is told is its own (LAUNCH_QUEUE_URL)."""
    queue_ref = function(template, LAUNCHER)["Properties"]["Environment"]["Variables"]["LAUNCH_QUEUE_URL"]
    return str(queue_ref["Ref"])


def failed_events_queue_id(template: Template) -> str:
    """Return the queue the status function's asynchronous invocations fail to (its on-failure destination)."""
    status_fn = logical_id(template, "AWS::Lambda::Function", {"FunctionName": STATUS})
    _, config = only(template, "AWS::Lambda::EventInvokeConfig", {"FunctionName": {"Ref": status_fn}})
    return str(config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0])


def test_every_queue_is_encrypted_and_refuses_plain_http(template: Template) -> None:
    queues = template.find_resources("AWS::SQS::Queue")
    # launch queue and its DLQ, the ECS rule's target DLQ, the status function's failed events, the relaunch DLQ
    assert len(queues) == 5
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policies = template.find_resources("AWS::SQS::QueuePolicy").values()
    tls_only = {
        json.dumps(queue_ref, sort_keys=True)
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for queue_ref in policy["Properties"]["Queues"]
    }
    assert tls_only == {json.dumps({"Ref": q}, sort_keys=True) for q in queues}


def test_launch_queue_redrives_crashes_only_and_outlives_the_retry_horizon(template: Template) -> None:
    queue = template.find_resources("AWS::SQS::Queue")[launch_queue_id(template)]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVE_COUNT == 50
    assert queue["VisibilityTimeout"] >= 6 * LAUNCHER_TIMEOUT.to_seconds()
    assert queue["MessageRetentionPeriod"] == 3600 + 3600  # retryHorizonSeconds + margin


def test_event_source_mapping_uses_partial_batches_and_bounded_concurrency(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [launch_queue_id(template), "Arn"]},
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
        },
    )


def test_ecs_rule_matches_only_this_clusters_tasks_started_by_the_control_plane(template: Template) -> None:
    cluster = logical_id(template, "AWS::ECS::Cluster")
    _, rule = only(template, "AWS::Events::Rule", {"EventPattern": {"source": ["aws.ecs"]}})
    props = rule["Properties"]
    assert "EventBusName" not in props  # the default bus, where ECS publishes
    assert props["EventPattern"] == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [{"Fn::GetAtt": [cluster, "Arn"]}],
            "startedBy": [STARTED_BY],
            # Only the steps that can end a task item (each match is an invocation): STOPPING carries the exit
            # code of a container that exited, so the task finishes there; STOPPED unless it is a Fargate task's
            # after an essential container's exit (each absent field has its own clause: anything-but needs the
            # field); a RUNNING event only when ECS is stopping the task (the Spot warning).
            "$or": [
                {"lastStatus": ["STOPPING"]},
                {"lastStatus": ["STOPPED"], "launchType": [{"anything-but": "FARGATE"}]},
                {"lastStatus": ["STOPPED"], "launchType": [{"exists": False}]},
                {"lastStatus": ["STOPPED"], "stopCode": [{"anything-but": "EssentialContainerExited"}]},
                {"lastStatus": ["STOPPED"], "stopCode": [{"exists": False}]},
                {"lastStatus": ["RUNNING"], "desiredStatus": ["STOPPED"]},
            ],
        },
    }


def test_ecs_rule_invokes_the_status_function_with_retries_and_a_target_dead_letter_queue(
    template: Template,
) -> None:
    """Delivery failures (EventBridge -> Lambda) are retried for 6 hours, then wait in an alarmed DLQ."""
    status_fn = logical_id(template, "AWS::Lambda::Function", {"FunctionName": STATUS})
    _, rule = only(template, "AWS::Events::Rule", {"EventPattern": {"source": ["aws.ecs"]}})
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [status_fn, "Arn"]}
    assert "InputPath" not in target and "Input" not in target  # the whole event, as the handler reads it
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 6 * 3600}
    dlq = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    queues = template.find_resources("AWS::SQS::Queue")
    assert queues[dlq]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    _, alarm = only(template, "AWS::CloudWatch::Alarm", {"AlarmName": "airflow-ecs-ecs-events-dlq-not-empty"})
    assert alarm["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}
    ]
    # Only EventBridge, for this rule, may invoke the function.
    rule_id = logical_id(template, "AWS::Events::Rule", {"EventPattern": {"source": ["aws.ecs"]}})
    _, permission = only(
        template, "AWS::Lambda::Permission", {"FunctionName": {"Fn::GetAtt": [status_fn, "Arn"]}}
    )
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
    assert not template.find_resources(
        "AWS::Lambda::EventSourceMapping", {"Properties": {"FunctionName": {"Ref": status_fn}}}
    )


def test_a_failed_status_invocation_lands_in_an_alarmed_queue_the_reconciler_replays(
    template: Template,
) -> None:
    """Function errors: Lambda retries twice, then sends its record to the on-failure destination, a queue
    (encrypted, TLS-only: see the first test) whose depth raises an alarm and which the reconciler consumes."""
    status_fn = logical_id(template, "AWS::Lambda::Function", {"FunctionName": STATUS})
    _, config = only(template, "AWS::Lambda::EventInvokeConfig", {"FunctionName": {"Ref": status_fn}})
    props = config["Properties"]
    assert (props["MaximumRetryAttempts"], props["MaximumEventAgeInSeconds"]) == (2, 6 * 3600)
    assert props["Qualifier"] == "$LATEST"
    queue = failed_events_queue_id(template)
    queues = template.find_resources("AWS::SQS::Queue")
    assert queues[queue]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    _, alarm = only(
        template, "AWS::CloudWatch::Alarm", {"AlarmName": "airflow-ecs-status-failed-events-dlq-not-empty"}
    )
    assert alarm["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
    ]
    reconciler = function(template, RECONCILER)["Properties"]
    assert reconciler["Environment"]["Variables"]["FAILED_EVENTS_QUEUE_URL"] == {"Ref": queue}
    _, age = only(template, "AWS::CloudWatch::Alarm", {"AlarmName": "airflow-ecs-status-event-age"})
    assert age["Properties"]["MetricName"] == "AsyncEventAge"
    assert age["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": status_fn}}]


def test_every_function_logs_json_without_the_platform_lines(template: Template) -> None:
    """Lambda's advanced logging controls: START/END/REPORT are not ingested (system level WARN)."""
    for name in (LAUNCHER, STATUS, RECONCILER):
        logging_config = function(template, name)["Properties"]["LoggingConfig"]
        assert logging_config["LogFormat"] == "JSON"
        assert logging_config["SystemLogLevel"] == "WARN"
        assert logging_config["ApplicationLogLevel"] == "INFO"


def test_relaunch_requests_on_the_project_bus_go_to_the_launch_queue_as_their_detail(
    template: Template,
) -> None:
    bus = logical_id(template, "AWS::Events::EventBus")
    _, rule = only(template, "AWS::Events::Rule", {"EventPattern": {"source": [SOURCE]}})
    props = rule["Properties"]
    assert props["EventBusName"] == {"Ref": bus}
    # Only relaunch requests: detail.kind is what only they carry (source and detail-type are the publisher's).
    assert props["EventPattern"] == {
        "source": [SOURCE],
        "detail-type": [RELAUNCH_REQUESTED],
        "detail": {"kind": ["relaunch"]},
    }
    (target,) = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [launch_queue_id(template), "Arn"]}
    assert target["InputPath"] == "$.detail"
    assert "Arn" in target["DeadLetterConfig"]


def test_events_can_reach_the_launch_queue(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": launch_queue_id(template)}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": Match.array_with(["sqs:SendMessage"]),
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Condition": {"ArnEquals": {"aws:SourceArn": Match.any_value()}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_tasks_table_settings(template: Template) -> None:
    _, table = only(template, "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    # Backups hold launch requests (workload tokens): one day of history by default (pointInTimeRecoveryDays).
    assert props["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True,
        "RecoveryPeriodInDays": 1,
    }
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": Attr.EXPIRES_AT, "Enabled": True}


def _by_name(entries: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {entry[key]: entry for entry in entries}


def test_tasks_table_is_the_contracts_table_definition(template: Template) -> None:
    """Keys, attribute types, indexes and projections are exactly the contract's CreateTable arguments."""
    props = only(template, "AWS::DynamoDB::Table")[1]["Properties"]
    contract = table_definition("unused")
    assert props["BillingMode"] == contract["BillingMode"]
    assert props["KeySchema"] == contract["KeySchema"]
    assert _by_name(props["AttributeDefinitions"], "AttributeName") == _by_name(
        contract["AttributeDefinitions"], "AttributeName"
    )
    indexes = _by_name(props["GlobalSecondaryIndexes"], "IndexName")
    expected = _by_name(contract["GlobalSecondaryIndexes"], "IndexName")
    assert set(indexes) == set(expected) == {"by_owner_changed", "by_active_checked"}
    for name, index in expected.items():
        assert indexes[name]["KeySchema"] == index["KeySchema"], name
        projection = indexes[name]["Projection"]
        assert projection["ProjectionType"] == index["Projection"]["ProjectionType"], name
        # Order does not matter to DynamoDB; duplicates would fail the deploy.
        attributes = projection.get("NonKeyAttributes", [])
        assert sorted(attributes) == sorted(index["Projection"].get("NonKeyAttributes", [])), name
        assert len(set(attributes)) == len(attributes), name
        assert "ProvisionedThroughput" not in indexes[name]  # on-demand, like the table


def _placeholders(env: dict[str, Any]) -> dict[str, str]:
    """Replace deploy-time values (references) by plausible strings, keep literals."""
    fake = {"SUBNETS": "subnet-1,subnet-2", "SECURITY_GROUPS": "sg-1"}
    return {k: v if isinstance(v, str) else fake.get(k, f"resolved-{k.lower()}") for k, v in env.items()}


def test_launcher_environment_is_accepted_by_the_launchers_own_parser(template: Template) -> None:
    env = function(template, LAUNCHER)["Properties"]["Environment"]["Variables"]
    required = {
        "TASKS_TABLE_NAME", "CLUSTER", "TASK_DEFINITION", "CONTAINER_NAME", "LAUNCH_TYPE", "PLATFORM_VERSION",
        "SUBNETS", "SECURITY_GROUPS", "ASSIGN_PUBLIC_IP", "RUN_TASK_KWARGS", "EVENT_BUS_NAME",
        "DEAD_LETTER_QUEUE_URL", "LAUNCH_QUEUE_URL", "FINISHED_TTL_SECONDS", "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }  # fmt: skip
    assert required <= set(env)
    assert (env["LAUNCH_TYPE"], env["ASSIGN_PUBLIC_IP"], env["CONTAINER_NAME"]) == ("FARGATE", "true", "base")
    assert env["FINISHED_TTL_SECONDS"] == str(7 * 24 * 3600)
    # The launchers share the account's 20 RunTask calls/s: 2 environments at 10 each, a batch applied at once.
    assert (env["LAUNCHER_RUN_TASK_RATE"], env["LAUNCH_PARALLELISM"]) == ("10", "10")
    settings = LauncherSettings.from_env(_placeholders(env))
    assert (settings.run_task_rate, settings.parallelism) == (10.0, 10)
    config = LaunchConfig.from_env(_placeholders(env))
    kwargs = config.base_kwargs()
    assert kwargs["launchType"] == "FARGATE"
    assert kwargs["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED"


def test_status_environment(template: Template) -> None:
    env = function(template, STATUS)["Properties"]["Environment"]["Variables"]
    expected = {"TASKS_TABLE_NAME", "CONTAINER_NAME", "CLUSTER", "EVENT_BUS_NAME", "FINISHED_TTL_SECONDS"}
    assert expected <= set(env)
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)
    assert not {"SUBNETS", "TASK_DEFINITION", "LAUNCH_QUEUE_URL"} & set(env)
    # Routine notifications (launched, succeeded) are off unless publishAllEvents; failures always go out.
    assert env["PUBLISH_ALL_EVENTS"] == "false"
    assert StatusSettings.from_env(_placeholders(env)).publish_all_events is False


def test_status_function_memory_is_what_the_benchmark_models(template: Template) -> None:
    from harness.bench.model import AwsModel

    assert function(template, STATUS)["Properties"]["MemorySize"] == AwsModel().status_memory_mb == 256
    assert function(template, LAUNCHER)["Properties"]["MemorySize"] == AwsModel().launcher_memory_mb == 128


def test_functions_trace_log_with_retention_and_use_the_runtime_layer(template: Template) -> None:
    layer = logical_id(template, "AWS::Lambda::LayerVersion")
    for name, handler in (
        (LAUNCHER, "lambdas.launcher.handler.handler"),
        (STATUS, "lambdas.status.handler.handler"),
        (RECONCILER, "lambdas.reconciler.handler.handler"),
    ):
        props = function(template, name)["Properties"]
        assert props["Handler"] == handler
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Layers"] == [{"Ref": layer}]
        log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        retention = template.find_resources("AWS::Logs::LogGroup")[log_group]["Properties"]["RetentionInDays"]
        assert retention == 30


def test_new_task_definition_runs_the_worker_image_with_awslogs(template: Template) -> None:
    _, task_definition = only(template, "AWS::ECS::TaskDefinition")
    props = task_definition["Properties"]
    assert props["Family"] == "airflow-ecs-worker"
    assert props["RequiresCompatibilities"] == ["FARGATE"]
    (container,) = props["ContainerDefinitions"]
    assert container["Name"] == "base"
    assert container["Image"] == "apache/airflow:3.3.2"
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "airflow"
    task_logs = template.find_resources("AWS::Logs::LogGroup")[
        container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    ]
    assert task_logs["DeletionPolicy"] == "Retain"
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            "ClusterName": "airflow-ecs",
        },
    )


def test_new_vpc_is_two_public_subnets_without_nat(template: Template) -> None:
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::Subnet", 2)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})
    _, group = only(template, "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]


def test_alarms_topic_and_dashboard(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values())
    assert metrics == sorted(
        ["ApproximateNumberOfMessagesVisible"] * 4  # the DLQs and the status function's failed events
        + ["Errors"] * 3
        + ["ApproximateAgeOfOldestMessage"]  # the launch queue
        + ["AsyncEventAge"]  # the ECS events the status function has not applied yet
        + ["ReconciledLost"]
    )
    topic_id, topic = only(template, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.resource_count_is("AWS::SNS::Subscription", 0)  # no alarmEmail by default
    _, dashboard = only(template, "AWS::CloudWatch::Dashboard")
    # Dashboard names are account-wide: the region in the name lets the same prefix deploy in two regions.
    assert {"Ref": "AWS::Region"} in dashboard["Properties"]["DashboardName"]["Fn::Join"][1]
    policies = template.find_resources("AWS::IAM::ManagedPolicy").values()
    assert len(policies) == 2  # the scheduler's and the API server's
    # IAM names are global too: let CloudFormation pick
    assert all("ManagedPolicyName" not in policy["Properties"] for policy in policies)


def test_outputs_include_ready_to_paste_airflow_settings(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    for name in (
        "QueueUrl", "TableName", "Region", "Cluster", "TaskDefinition", "LogGroup", "EventBusName", "SchedulerPolicyArn",
        "LogReaderPolicyArn",
    ):  # fmt: skip
        assert name in outputs
    # replay-dlq's arguments after a fix: each DLQ and the queue it goes back to (the rule's target DLQ goes to
    # the failed-events queue, which the reconciler replays).
    assert "StatusQueueUrl" not in outputs
    assert outputs["StatusFailedEventsQueueUrl"]["Value"] == {"Ref": failed_events_queue_id(template)}
    _, rule = only(template, "AWS::Events::Rule", {"EventPattern": {"source": ["aws.ecs"]}})
    (target,) = rule["Properties"]["Targets"]
    assert outputs["StatusDeadLetterQueueUrl"]["Value"] == {
        "Ref": target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    }
    assert "LaunchDeadLetterQueueUrl" in outputs
    lines = {}
    for output in outputs.values():
        value = output["Value"]
        first = value if isinstance(value, str) else value.get("Fn::Join", ["", [""]])[1][0]
        if first.startswith("AIRFLOW__ECS_EVENT_EXECUTOR__"):
            lines[first.split("=", 1)[0]] = value
    assert set(lines) == {
        f"AIRFLOW__ECS_EVENT_EXECUTOR__{key}"
        for key in (
            "QUEUE_URL",
            "TABLE_NAME",
            "REGION_NAME",
            "LOG_GROUP",
            "LOG_STREAM_PREFIX",
            "CONTAINER_NAME",
            "LAUNCH_PROFILES",
            "UNKNOWN_QUEUE",
            "ALLOWED_IMAGES",
            "WORKER_AIRFLOW_VERSION",
        )
    }
    # What the executor checks at queue time: the profile names (cdk.json's "spot"), the unknown-queue policy
    # and the allowed images (this account's ECR repositories).
    assert (
        lines["AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_PROFILES"]
        == "AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_PROFILES=spot"
    )
    assert (
        lines["AIRFLOW__ECS_EVENT_EXECUTOR__UNKNOWN_QUEUE"]
        == "AIRFLOW__ECS_EVENT_EXECUTOR__UNKNOWN_QUEUE=default"
    )
    assert (
        lines["AIRFLOW__ECS_EVENT_EXECUTOR__CONTAINER_NAME"]
        == "AIRFLOW__ECS_EVENT_EXECUTOR__CONTAINER_NAME=base"
    )
    assert lines["AIRFLOW__ECS_EVENT_EXECUTOR__QUEUE_URL"]["Fn::Join"][1][1] == {
        "Ref": launch_queue_id(template)
    }
