"""The demo DAG: every kind of task the ECS event executor must handle, each with the state it must end in.

``EXPECTED`` (also read by ``make demo`` and the end-to-end tests) says what every task instance ends as; a mapped
task's instances are keyed ``task_id[map_index]``.
"""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11: the same decorators, before the Task SDK
    from airflow.decorators import dag, task  # type: ignore[no-redef,unused-ignore]

DAG_ID = "ecs_event_demo"
# An executor_config is RunTask overrides: here, one more environment variable for the Airflow container.
EXECUTOR_CONFIG = {
    "overrides": {
        "containerOverrides": [
            {"name": "base", "environment": [{"name": "DEMO_STAGE", "value": "transform"}]}
        ]
    }
}
# A task on another image: a task definition derived from the stack's, registered once (the image must be allowed:
# by default, an ECR repository of the account; the local mode's account is 123456789012 in us-east-1).
OTHER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow-gpu:demo"
EXPECTED = {
    "extract": "success",
    "on_other_image": "success",
    "on_spot": "success",
    "transform": "success",
    "square[0]": "success",
    "square[1]": "success",
    "square[2]": "success",
    "fail_on_purpose": "failed",
    "after_failure": "upstream_failed",
    "report": "success",
}


@dag(dag_id=DAG_ID, schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["demo"])
def ecs_event_demo() -> None:
    @task
    def extract() -> list[int]:
        print("extracting on", os.environ.get("AIRFLOW_ECS_EVENT_LAUNCH_ID"))
        return [1, 2, 3]

    @task(executor_config=EXECUTOR_CONFIG)
    def transform(numbers: list[int]) -> int:
        # The override reached the container: the task fails if it did not.
        stage = os.environ.get("DEMO_STAGE")
        print("DEMO_STAGE =", stage)
        if stage != "transform":
            raise RuntimeError(f"executor_config override missing: DEMO_STAGE={stage!r}")
        return sum(numbers)

    @task
    def square(x: int) -> int:
        return x * x

    @task(executor_config={"image": OTHER_IMAGE})
    def on_other_image() -> None:
        print("running on", OTHER_IMAGE)

    # Airflow's queue picks the launch profile: cdk.json's "spot" runs the task on Fargate Spot.
    @task(queue="spot")
    def on_spot() -> None:
        print("running on the spot profile")

    @task(retries=0)
    def fail_on_purpose() -> None:
        raise RuntimeError("this task fails on purpose")

    @task
    def after_failure() -> None:
        print("never runs: its upstream failed")

    @task
    def report(total: int, squares: list[int]) -> None:
        print(f"total={total} squares={sorted(squares)}")

    numbers = extract()
    report(transform(numbers), square.expand(x=numbers))
    fail_on_purpose() >> after_failure()
    on_other_image()
    on_spot()


ecs_event_demo()
