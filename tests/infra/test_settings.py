"""Settings from cdk.json: defaults that build a stack, and wrong values that fail naming the setting."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.settings import CONTEXT_KEY, MAX_RECONCILE_WINDOW_SECONDS, Settings, SettingsError, load_settings
from infra.template import cdk_json_context


def defaults(**overrides: Any) -> dict[str, Any]:
    return {**cdk_json_context()[CONTEXT_KEY], **overrides}


def test_cdk_json_defaults_are_a_new_public_vpc_new_cluster_and_new_task_definition() -> None:
    settings = load_settings(defaults())
    assert settings == Settings()  # cdk.json spells out the dataclass defaults
    assert settings.new_vpc and settings.new_cluster and settings.new_task_definition
    assert settings.nat_gateways == 0 and settings.assign_public_ip
    assert settings.launch_type == "FARGATE" and settings.container_name == "base"
    assert settings.launcher_max_concurrency == 2
    assert settings.launcher_memory_mb == 128
    assert settings.queue_retention_seconds == 7200


def test_empty_context_means_the_defaults() -> None:
    assert load_settings(None) == Settings()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"namePrefix": "Airflow_ECS"}, "namePrefix"),
        ({"launcherMaxConcurrency": 1}, "launcherMaxConcurrency"),
        ({"launcherMaxConcurrency": "5"}, "launcherMaxConcurrency"),
        ({"launcherMemoryMb": 64}, "launcherMemoryMb"),
        ({"runTaskCallsPerSecond": 0}, "runTaskCallsPerSecond"),
        ({"runTaskCallsPerSecond": 2, "launcherMaxConcurrency": 5}, "runTaskCallsPerSecond"),
        ({"retryHorizonSeconds": 30 * 24 * 3600}, "retryHorizonSeconds"),
        ({"logRetentionDays": 10}, "logRetentionDays"),
        ({"cpu": 300}, "cpu"),
        ({"cpu": 256, "memory": 4096}, "memory"),
        ({"launchType": "LAMBDA"}, "launchType"),
        ({"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT"}]}, "launchType"),
        ({"launchType": None, "capacityProviderStrategy": [{"weight": 1}]}, "capacityProviderStrategy[0]"),
        (
            {"launchType": None, "capacityProviderStrategy": [{"capacityProvider": "my-asg"}]},
            "capacityProviderStrategy",
        ),
        ({"launchType": "EC2"}, "launchType"),
        ({"subnetIds": ["subnet-0123456789abcdef0"]}, "subnetIds"),
        ({"vpcId": "vpc-0123456789abcdef0"}, "subnetIds"),
        ({"vpcId": "vpc-123"}, "vpcId"),
        ({"assignPublicIp": False}, "assignPublicIp"),
        ({"region": "eu-west-1"}, "availabilityZones"),
        ({"region": "eu-west-1", "availabilityZones": ["us-east-1a", "us-east-1b"]}, "availabilityZones"),
        ({"cluster": "arn:aws:ecs:eu-west-1:123:cluster/x"}, "cluster"),
        (
            {"taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow"},
            "taskDefinitionArn",
        ),
        (
            {"taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow:3"},
            "logGroupName",
        ),
        ({"taskRoleArn": "arn:aws:iam::123456789012:role/x"}, "taskRoleArn"),
        ({"runTaskKwargs": {"startedBy": "me"}}, "runTaskKwargs"),
        ({"runTaskKwargs": {"count": 2}}, "runTaskKwargs"),
        ({"executionApiServerUrl": "airflow:8080"}, "executionApiServerUrl"),
        # A partial ARN (no 6-character suffix) would be granted nothing: ECS could not read the secret.
        (
            {"metadataDbSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"},
            "metadataDbSecretArn",
        ),
        ({"metadataDbSecretArn": "postgresql://user:password@db/airflow"}, "metadataDbSecretArn"),
        (
            {
                "metadataDbSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
                "cluster": "airflow-prod",
                "taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow:3",
                "logGroupName": "/ecs/airflow-worker",
            },
            "metadataDbSecretArn",
        ),
        (
            {"alarmEmail": "ops@example.com", "alarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:t"},
            "alarmEmail",
        ),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"launcherConcurrency": 5}, "launcherConcurrency"),
        ({"statusReservedConcurrency": 1}, "statusReservedConcurrency"),
        ({"reconcileEveryMinutes": 0}, "reconcileEveryMinutes"),
        ({"reconcileEveryMinutes": "5"}, "reconcileEveryMinutes"),
        ({"reconcileStaleAfterSeconds": 30}, "reconcileStaleAfterSeconds"),
        ({"reconcileStaleAfterSeconds": 3600}, "reconcileStaleAfterSeconds"),
        ({"reconcileStaleAfterSeconds": 2100, "reconcileEveryMinutes": 6}, "reconcileStaleAfterSeconds"),
    ],
)
def test_a_wrong_setting_fails_naming_it(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match="^" + re.escape(f"ecsEventExecutor.{named}")):
        load_settings(defaults(**overrides))


def test_a_database_url_pasted_as_the_secret_arn_is_refused_without_repeating_it() -> None:
    with pytest.raises(SettingsError, match="metadataDbSecretArn") as refused:
        load_settings(defaults(metadataDbSecretArn="postgresql://airflow:hunter2@db/airflow"))
    assert "hunter2" not in str(refused.value)


def test_existing_task_definition_family_arn_drops_the_revision() -> None:
    settings = load_settings(
        defaults(
            cluster="airflow-prod",
            taskDefinitionArn="arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-worker:42",
            logGroupName="/ecs/airflow-worker",
        )
    )
    assert (
        settings.task_definition_family_arn
        == "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-worker"
    )


def test_ec2_capacity_needs_existing_cluster_and_task_definition() -> None:
    settings = load_settings(
        defaults(
            cluster="airflow-prod",
            taskDefinitionArn="arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-worker:42",
            logGroupName="/ecs/airflow-worker",
            launchType=None,
            capacityProviderStrategy=[{"capacityProvider": "my-asg-provider", "weight": 1, "base": 1}],
            platformVersion=None,
        )
    )
    assert not settings.uses_fargate


def test_the_longest_retry_horizon_fits_in_sqs_retention() -> None:
    settings = load_settings(defaults(retryHorizonSeconds=14 * 24 * 3600 - 3600))
    assert settings.queue_retention_seconds == 14 * 24 * 3600


def test_reconciler_defaults_and_the_widest_window_ecs_allows() -> None:
    settings = load_settings(defaults())
    assert (settings.reconcile_every_minutes, settings.reconcile_stale_after_seconds) == (5, 600)
    # Stale-after plus one period may reach 2400 s (40 min), inside the hour ECS keeps stopped tasks.
    widest = load_settings(defaults(reconcileEveryMinutes=10, reconcileStaleAfterSeconds=1800))
    assert (
        widest.reconcile_stale_after_seconds + widest.reconcile_every_minutes * 60
        == MAX_RECONCILE_WINDOW_SECONDS
    )
    with pytest.raises(SettingsError, match=r"reconcileStaleAfterSeconds: 1801 s plus reconcileEveryMinutes"):
        load_settings(defaults(reconcileEveryMinutes=10, reconcileStaleAfterSeconds=1801))


def test_publish_all_events_is_off_by_default_and_a_boolean() -> None:
    assert load_settings(defaults()).publish_all_events is False
    assert load_settings(defaults(publishAllEvents=True)).publish_all_events is True
    with pytest.raises(SettingsError, match="publishAllEvents"):
        load_settings(defaults(publishAllEvents="yes"))
