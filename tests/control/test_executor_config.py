"""executor_config checked at queue time by the container name and ECS's limits alone, no launch configuration."""

from __future__ import annotations

import pytest
from ecs_event_executor.control.executor_config import (
    OVERRIDES_MAX_CHARS,
    ExecutorConfigError,
    OverridesTooLarge,
    check_executor_config,
)


def _config(value_chars: int) -> dict[str, object]:
    env = [{"name": "PAYLOAD", "value": "x" * value_chars}]
    return {"overrides": {"containerOverrides": [{"name": "base", "environment": env}]}}


def test_a_valid_config_is_returned_as_given() -> None:
    config = {"tags": [{"key": "team", "value": "data"}], "overrides": {"memory": "4096"}}
    assert check_executor_config(config, container_name="base", command=["airflow"], max_attempts=3) == config
    assert check_executor_config(None, container_name="base", command=["airflow"], max_attempts=3) == {}


def test_the_size_budget_counts_the_command_and_the_longest_launch_marks() -> None:
    command = ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", "{}"]

    def fits(chars: int) -> bool:
        try:
            check_executor_config(_config(chars), container_name="base", command=command, max_attempts=20)
        except OverridesTooLarge as exc:
            assert f"ECS allows at most {OVERRIDES_MAX_CHARS}" in str(exc)
            return False
        return True

    assert fits(7000)
    assert not fits(OVERRIDES_MAX_CHARS)
    largest = max(n for n in range(7000, OVERRIDES_MAX_CHARS) if fits(n))
    assert not fits(largest + 1)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"overrides": {"containerOverrides": [{"name": "base", "command": ["sh"]}]}},
            "executor_config.overrides.containerOverrides[0].command: may not be overridden",
        ),
        ({"name": "other"}, "executor_config.name: may not be overridden"),
        (
            {"overrides": {"containerOverrides": [{"name": "side"}, {"name": "side"}]}},
            "executor_config.overrides.containerOverrides[1].name: container 'side' is overridden twice",
        ),
        ({"cpu": "1024"}, 'executor_config.cpu: Unknown parameter in input: "cpu", must be one of'),
        (
            {"overrides": {"containerOverrides": [{"name": "base", "cpu": "1"}]}},
            "executor_config.overrides.containerOverrides[0].cpu: Invalid type for parameter "
            "overrides.containerOverrides[0].cpu",
        ),
    ],
)
def test_a_bad_config_names_the_field(config: dict[str, object], message: str) -> None:
    with pytest.raises(ExecutorConfigError) as raised:
        check_executor_config(config, container_name="base", command=["airflow"], max_attempts=3)
    assert str(raised.value).startswith(message)
