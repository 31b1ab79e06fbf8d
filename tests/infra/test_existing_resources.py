"""The stack on an existing VPC, cluster and task definition: nothing of those is created, and IAM names them."""

from __future__ import annotations

import json

from ecs_event_executor.control.run_task import LaunchConfig

from tests.infra.conftest import EXISTING, InProcessSynth
from tests.infra.helpers import function, only, role_statements, statement_with

CLUSTER_ARN = "arn:aws:ecs:eu-west-1:123456789012:cluster/airflow-prod"


def test_nothing_existing_is_created(existing_synth: InProcessSynth) -> None:
    t = existing_synth.template
    for type_ in (
        "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::ECS::Cluster",
        "AWS::ECS::TaskDefinition", "AWS::SNS::Topic", "AWS::KMS::Key",
    ):  # fmt: skip
        t.resource_count_is(type_, 0)
    assert existing_synth.stack.region == "eu-west-1"
    assert existing_synth.stack.account == "123456789012"


def test_launcher_uses_the_existing_network_and_capacity_providers(existing_synth: InProcessSynth) -> None:
    env = function(existing_synth.template, "airflow-ecs-launcher")["Properties"]["Environment"]["Variables"]
    assert env["CLUSTER"] == CLUSTER_ARN
    assert env["TASK_DEFINITION"] == EXISTING["taskDefinitionArn"]
    assert env["SUBNETS"] == ",".join(EXISTING["subnetIds"])
    assert env["SECURITY_GROUPS"] == "sg-0123456789abcdef0"
    assert env["ASSIGN_PUBLIC_IP"] == "false"
    assert "LAUNCH_TYPE" not in env
    assert json.loads(env["CAPACITY_PROVIDER_STRATEGY"]) == EXISTING["capacityProviderStrategy"]
    literal = {k: v for k, v in env.items() if isinstance(v, str)}
    config = LaunchConfig.from_env({**literal, "TASKS_TABLE_NAME": "t"})
    assert config.base_kwargs()["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT"


def test_iam_names_the_existing_family_cluster_and_roles(existing_synth: InProcessSynth) -> None:
    statements = role_statements(existing_synth.template, "airflow-ecs-launcher")
    run = statement_with(statements, "ecs:RunTask")
    assert sorted(run["Resource"]) == [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-worker-derived-*",
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-worker:*",
    ]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}
    stop = statement_with(statements, "ecs:StopTask")
    assert stop["Resource"] == "arn:aws:ecs:eu-west-1:123456789012:task/airflow-prod/*"
    passed = statement_with(statements, "iam:PassRole")["Resource"]
    assert sorted(passed) == sorted([EXISTING["taskRoleArn"], EXISTING["executionRoleArn"]])


def test_ecs_rule_filters_on_the_existing_cluster_arn(existing_synth: InProcessSynth) -> None:
    _, rule = only(existing_synth.template, "AWS::Events::Rule", {"EventPattern": {"source": ["aws.ecs"]}})
    assert rule["Properties"]["EventPattern"]["detail"]["clusterArn"] == [CLUSTER_ARN]


def test_alarms_notify_the_existing_topic(existing_synth: InProcessSynth) -> None:
    alarms = existing_synth.template.find_resources("AWS::CloudWatch::Alarm").values()
    assert alarms
    assert all(a["Properties"]["AlarmActions"] == [EXISTING["alarmTopicArn"]] for a in alarms)


def test_outputs_name_the_existing_log_group(existing_synth: InProcessSynth) -> None:
    outputs = existing_synth.template.to_json()["Outputs"]
    assert outputs["LogGroup"]["Value"] == "/ecs/airflow-worker"
    assert outputs["AirflowLogGroup"]["Value"] == "AIRFLOW__ECS_EVENT_EXECUTOR__LOG_GROUP=/ecs/airflow-worker"
