"""The other options of a new VPC and task definition: NAT and private subnets, email alarms, the API server URL.

Also proves the conditional cdk-nag acknowledgments (ECS2 with a plain variable, VPC7 without flow logs) keep
the synth passing.
"""

from __future__ import annotations

import pytest

from tests.infra.conftest import InProcessSynth, synth_in_process
from tests.infra.helpers import function, only

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:airflow/metadata-db-AbCdEf"
OPTIONS = {
    "namePrefix": "airflow-private",
    "natGateways": 1,
    "assignPublicIp": False,
    "vpcFlowLogs": False,
    "executionApiServerUrl": "https://airflow.example.com/execution/",
    "metadataDbSecretArn": SECRET_ARN,
    "alarmEmail": "ops@example.com",
    "statusReservedConcurrency": 10,
    "launcherMaxConcurrency": 20,
    "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    "launchType": None,
}


@pytest.fixture(scope="module")
def private_synth(tmp_path_factory: pytest.TempPathFactory) -> InProcessSynth:
    return synth_in_process(tmp_path_factory.mktemp("private"), **OPTIONS)


def test_tasks_run_in_private_subnets_behind_nat(private_synth: InProcessSynth) -> None:
    t = private_synth.template
    t.resource_count_is("AWS::EC2::NatGateway", 1)
    t.resource_count_is("AWS::EC2::Subnet", 4)
    t.resource_count_is("AWS::EC2::FlowLog", 0)
    env = function(t, "airflow-private-launcher")["Properties"]["Environment"]["Variables"]
    assert env["ASSIGN_PUBLIC_IP"] == "false"
    subnet_refs = {part["Ref"] for part in env["SUBNETS"]["Fn::Join"][1] if isinstance(part, dict)}
    private = t.find_resources("AWS::EC2::Subnet", {"Properties": {"MapPublicIpOnLaunch": False}})
    assert subnet_refs == set(private)
    assert env["CAPACITY_PROVIDER_STRATEGY"] == '[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]'


def test_worker_container_gets_the_execution_api_server_url(private_synth: InProcessSynth) -> None:
    _, task_definition = only(private_synth.template, "AWS::ECS::TaskDefinition")
    (container,) = task_definition["Properties"]["ContainerDefinitions"]
    assert container["Environment"] == [
        {"Name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "Value": "https://airflow.example.com/execution/"}
    ]


def test_airflow_2_11_workers_get_the_metadata_database_url_as_an_ecs_secret_only(
    private_synth: InProcessSynth,
) -> None:
    """The URL carries the database password: ECS injects it from Secrets Manager; it is no plain variable."""
    t = private_synth.template
    _, task_definition = only(t, "AWS::ECS::TaskDefinition")
    (container,) = task_definition["Properties"]["ContainerDefinitions"]
    assert container["Secrets"] == [{"Name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "ValueFrom": SECRET_ARN}]
    assert all(e["Name"] != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" for e in container.get("Environment", []))
    # Only the execution role may read it, and only that secret.
    readers = [
        statement
        for policy in t.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in _actions(statement)
    ]
    assert readers and all(statement["Resource"] == SECRET_ARN for statement in readers)


def _actions(statement: dict[str, object]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)  # type: ignore[call-overload]


def test_alarm_email_subscription_and_concurrency_settings(private_synth: InProcessSynth) -> None:
    t = private_synth.template
    t.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    status = function(t, "airflow-private-status")["Properties"]
    assert status["ReservedConcurrentExecutions"] == 10
    t.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 20}}
    )
    # The rule invokes the status function asynchronously: a throttled event is retried by Lambda (up to 6 h),
    # then kept in the failed-events queue; no event source to cap.
    status_id = only(t, "AWS::Lambda::Function", {"FunctionName": "airflow-private-status"})[0]
    assert not t.find_resources(
        "AWS::Lambda::EventSourceMapping", {"Properties": {"FunctionName": {"Ref": status_id}}}
    )
