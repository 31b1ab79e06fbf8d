"""Queue time (moto): a task's image, its queue and its cost tags are checked when it is queued, naming the setting."""

from __future__ import annotations

from typing import Any

import pytest
from ecs_event_executor.control.messages import LaunchRequest, parse_message

from tests.executor.conftest import ExecutorEnv, execute_task, make_ti, queue_all

pytestmark = pytest.mark.compat

# The executor_env queue's account (moto's) and region: their ECR repositories are allowed by default.
ACCOUNT_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow-gpu:1"


def workload(run_id: str, *, queue: str = "default", executor_config: Any = None) -> Any:
    ti = make_ti(run_id, executor_config=executor_config)
    ti.queue = queue
    return execute_task(ti)


def launches(env: ExecutorEnv) -> list[LaunchRequest]:
    return [m for m in (parse_message(r["Body"]) for r in env.received()) if isinstance(m, LaunchRequest)]


def test_an_image_outside_the_allowed_images_is_refused_at_queue_time_naming_the_setting(
    executor_env: ExecutorEnv,
) -> None:
    executor = executor_env.executor()
    ours = workload("ours", executor_config={"image": ACCOUNT_IMAGE})
    other_account = workload(
        "other", executor_config={"image": "210987654321.dkr.ecr.us-east-1.amazonaws.com/airflow:1"}
    )
    hub = workload("hub", executor_config={"image": "docker.io/someone/airflow:latest"})
    queue_all(executor, [ours, other_account, hub])
    buffer = executor.get_event_buffer()
    for refused in (other_account, hub):
        state, info = buffer[refused.ti.key]
        assert state == "failed"
        assert (
            "executor_config.image" in info and "not allowed by [ecs_event_executor] allowed_images" in info
        )
    assert buffer[ours.ti.key][0] == "running"
    (sent,) = launches(executor_env)
    assert sent.executor_config == {"image": ACCOUNT_IMAGE}


def test_allowed_images_lists_other_registries(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW__ECS_EVENT_EXECUTOR__ALLOWED_IMAGES", "public.ecr.aws/acme/*, ghcr.io/acme/airflow:*"
    )
    executor = executor_env.executor()
    allowed = workload("public", executor_config={"image": "public.ecr.aws/acme/airflow:3"})
    now_refused = workload("ecr", executor_config={"image": ACCOUNT_IMAGE})
    queue_all(executor, [allowed, now_refused])
    buffer = executor.get_event_buffer()
    assert buffer[allowed.ti.key][0] == "running"
    assert buffer[now_refused.ti.key][0] == "failed"


def test_the_queue_travels_with_the_launch_and_an_unknown_one_is_refused_when_configured(
    executor_env: ExecutorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__LAUNCH_PROFILES", "spot,gpu")
    monkeypatch.setenv("AIRFLOW__ECS_EVENT_EXECUTOR__UNKNOWN_QUEUE", "refuse")
    executor = executor_env.executor()
    spot, default, typo = workload("s", queue="spot"), workload("d"), workload("t", queue="spto")
    queue_all(executor, [spot, default, typo])
    buffer = executor.get_event_buffer()
    state, info = buffer[typo.ti.key]
    assert state == "failed"
    assert "queue 'spto' names no launch profile" in info and "[ecs_event_executor] unknown_queue" in info
    assert sorted((m.key.run_id, m.queue) for m in launches(executor_env)) == [
        ("d", "default"),
        ("s", "spot"),
    ]


def test_cost_tags_count_against_the_tag_limit_at_queue_time(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    # 46 tags of the task's own fit; with the 4 cost tags (no team) that is ECS's 50. One more does not.
    fits = workload("fits", executor_config={"tags": [{"key": f"k{i}", "value": "v"} for i in range(46)]})
    over = workload("over", executor_config={"tags": [{"key": f"k{i}", "value": "v"} for i in range(47)]})
    queue_all(executor, [fits, over])
    buffer = executor.get_event_buffer()
    assert buffer[fits.ti.key][0] == "running"
    state, info = buffer[over.ti.key]
    assert state == "failed" and "executor_config.tags: is 51 items; ECS allows at most 50" in info
