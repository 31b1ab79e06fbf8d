"""Launch profiles and per-task images in the stack: every cluster and task definition family IAM names is one of
the stack's or its profiles' (no '*' task definition), and the functions and the ECS rule know every profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ecs_event_executor.control import environment as env_vars

from infra.settings import SettingsError, load_settings
from tests.infra.conftest import EXISTING, InProcessSynth, synth_in_process
from tests.infra.helpers import function, only, role_statements, statement_with

LAUNCHER, RECONCILER = "airflow-ecs-launcher", "airflow-ecs-reconciler"
GPU_CLUSTER = "arn:aws:ecs:eu-west-1:123456789012:cluster/airflow-gpu"
GPU_TASK_DEFINITION = "arn:aws:ecs:eu-west-1:123456789012:task-definition/airflow-gpu-worker:7"
FAMILIES = "arn:aws:ecs:eu-west-1:123456789012:task-definition"
PROFILES = {
    "spot": {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}], "memory": 4096},
    "gpu": {
        "cluster": GPU_CLUSTER,
        "taskDefinition": GPU_TASK_DEFINITION,
        "launchType": "EC2",
        "runTaskKwargs": {
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:gpu == true"}]
        },
    },
}


@pytest.fixture(scope="module")
def profiles_synth(tmp_path_factory: pytest.TempPathFactory) -> InProcessSynth:
    """The stack on existing resources (fixed account and region) with a spot and a GPU profile; cdk-nag runs."""
    return synth_in_process(tmp_path_factory.mktemp("profiles"), **EXISTING, launchProfiles=PROFILES)


def _resources(statement: dict[str, Any]) -> list[str]:
    resources = statement["Resource"]
    return sorted(resources if isinstance(resources, list) else [resources])


def test_run_task_and_registration_are_scoped_to_the_profiles_families_and_clusters(
    profiles_synth: InProcessSynth,
) -> None:
    statements = role_statements(profiles_synth.template, LAUNCHER)
    run = statement_with(statements, "ecs:RunTask")
    assert _resources(run) == sorted(
        [
            f"{FAMILIES}/airflow-worker:*",
            f"{FAMILIES}/airflow-gpu-worker:*",
            f"{FAMILIES}/airflow-worker-derived-*",
            f"{FAMILIES}/airflow-gpu-worker-derived-*",
        ]
    )
    assert sorted(run["Condition"]["ArnEquals"]["ecs:cluster"]) == sorted([EXISTING["cluster"], GPU_CLUSTER])
    register = statement_with(statements, "ecs:RegisterTaskDefinition")
    assert _resources(register) == [
        f"{FAMILIES}/airflow-gpu-worker-derived-*",
        f"{FAMILIES}/airflow-worker-derived-*",
    ]
    for action in ("ecs:StopTask", "ecs:TagResource"):
        assert _resources(statement_with(statements, action)) == [
            "arn:aws:ecs:eu-west-1:123456789012:task/airflow-gpu/*",
            "arn:aws:ecs:eu-west-1:123456789012:task/airflow-prod/*",
        ]
    # No statement that can start, register or remove a task definition names every task definition.
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if {"ecs:RunTask", "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition"} & set(actions):
            assert all(not r.endswith("task-definition/*") and r != "*" for r in _resources(statement))
    passed = statement_with(statements, "iam:PassRole")
    assert _resources(passed) == sorted([EXISTING["taskRoleArn"], EXISTING["executionRoleArn"]])
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_the_reconciler_deregisters_only_derived_families(profiles_synth: InProcessSynth) -> None:
    statements = role_statements(profiles_synth.template, RECONCILER)
    deregister = statement_with(statements, "ecs:DeregisterTaskDefinition")
    assert _resources(deregister) == [
        f"{FAMILIES}/airflow-gpu-worker-derived-*",
        f"{FAMILIES}/airflow-worker-derived-*",
    ]
    describe = statement_with(statements, "ecs:DescribeTasks")
    assert sorted(describe["Condition"]["ArnEquals"]["ecs:cluster"]) == sorted(
        [EXISTING["cluster"], GPU_CLUSTER]
    )
    env = function(profiles_synth.template, RECONCILER)["Properties"]["Environment"]["Variables"]
    assert env[env_vars.DERIVED_TASK_DEFINITION_UNUSED_DAYS] == "14"
    assert env[env_vars.TASK_DEFINITION] == EXISTING["taskDefinitionArn"]


def test_every_function_and_the_ecs_rule_know_the_profiles(profiles_synth: InProcessSynth) -> None:
    template = profiles_synth.template
    launcher_env = function(template, LAUNCHER)["Properties"]["Environment"]["Variables"]
    profiles = json.loads(launcher_env[env_vars.LAUNCH_PROFILES])
    assert profiles["gpu"]["cluster"] == GPU_CLUSTER and profiles["gpu"]["launchType"] == "EC2"
    assert profiles["spot"] == PROFILES["spot"]
    assert launcher_env[env_vars.UNKNOWN_QUEUE] == "default"
    assert launcher_env[env_vars.ALLOWED_IMAGES] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/*"
    _, rule = only(template, "AWS::Events::Rule", {"EventPattern": {"source": ["aws.ecs"]}})
    assert sorted(rule["Properties"]["EventPattern"]["detail"]["clusterArn"]) == sorted(
        [EXISTING["cluster"], GPU_CLUSTER]
    )


def test_profile_settings_fail_synth_naming_the_setting(tmp_path: Path) -> None:
    for profiles, key in (
        ({"gpu": {"taskDefinition": "airflow-gpu"}}, "launchProfiles.gpu.taskDefinition"),
        ({"gpu": {"launchType": "EC2"}}, "launchProfiles.gpu.cluster"),
        ({"default": {}}, "launchProfiles"),
        (
            {
                "x": {
                    "runTaskKwargs": {
                        "overrides": {"containerOverrides": [{"name": "base", "command": ["sh"]}]}
                    }
                }
            },
            "launchProfiles.x.runTaskKwargs",
        ),
    ):
        with pytest.raises(SettingsError, match=f"ecsEventExecutor.{key}"):
            load_settings({"launchProfiles": profiles})
