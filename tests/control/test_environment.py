"""The Lambda environment: one constant per variable, one model that reads them, errors that name the variable."""

from __future__ import annotations

import re

import pytest
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.environment import EnvironmentVariableError, LambdaEnvironment
from ecs_event_executor.control.reconciling import ReconcilerSettings
from ecs_event_executor.control.status_tracking import StatusSettings

MINIMAL = {env_vars.TASKS_TABLE_NAME: "tasks", env_vars.CONTAINER_NAME: "base"}


def test_every_variable_the_model_reads_is_a_constant_of_the_module() -> None:
    constants = {v for k, v in vars(env_vars).items() if k.isupper() and isinstance(v, str)}
    read = {str(field.validation_alias) for field in LambdaEnvironment.model_fields.values()}
    assert read <= constants
    assert all(getattr(env_vars, name) == name for name in read)


def test_blank_variables_are_not_set_and_values_are_trimmed() -> None:
    env = LambdaEnvironment.read({env_vars.TASKS_TABLE_NAME: " tasks ", env_vars.CLUSTER: "  "})
    assert (env.tasks_table_name, env.cluster) == ("tasks", None)
    with pytest.raises(EnvironmentVariableError, match=r"^CLUSTER is required and not set$"):
        env.require(env_vars.CLUSTER)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (env_vars.STALE_AFTER_SECONDS, "0", "STALE_AFTER_SECONDS must be positive, got 0"),
        (env_vars.RECONCILE_PAGE_SIZE, "many", "RECONCILE_PAGE_SIZE must be a whole number, got 'many'"),
        (env_vars.FINISHED_TTL_SECONDS, "1.5", "FINISHED_TTL_SECONDS must be a whole number, got '1.5'"),
        (
            env_vars.PUBLISH_ALL_EVENTS,
            "Sometimes",
            "PUBLISH_ALL_EVENTS must be true or false, got 'sometimes'",
        ),
        (env_vars.LAUNCH_TYPE, "lambda", "LAUNCH_TYPE must be FARGATE, EC2 or EXTERNAL, got 'lambda'"),
        (env_vars.CAPACITY_PROVIDER_STRATEGY, '["x"]', "CAPACITY_PROVIDER_STRATEGY[0] needs a string"),
        (
            env_vars.CAPACITY_PROVIDER_STRATEGY,
            "{}",
            "CAPACITY_PROVIDER_STRATEGY must be a JSON list, got dict",
        ),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(EnvironmentVariableError, match="^" + re.escape(message)):
        ReconcilerSettings.from_env({**MINIMAL, name: value})


def test_services_take_their_defaults_when_a_variable_is_not_set() -> None:
    settings = ReconcilerSettings.from_env(MINIMAL)
    assert (settings.stale_after_seconds, settings.page_size) == (600, 1000)
    assert settings.status == StatusSettings(table_name="tasks", container_name="base")
    with pytest.raises(EnvironmentVariableError, match=r"^CONTAINER_NAME is required and not set$"):
        StatusSettings.from_env({env_vars.TASKS_TABLE_NAME: "tasks"})
