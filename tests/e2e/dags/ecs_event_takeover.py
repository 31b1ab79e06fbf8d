"""A DAG for the scheduler-takeover test: tasks that still run when the scheduler is killed and replaced."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="ecs_event_takeover", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def ecs_event_takeover() -> None:
    @task(retries=0)
    def steady(seconds: int) -> int:
        time.sleep(seconds)
        return seconds

    steady.expand(seconds=[45, 50])


ecs_event_takeover()
