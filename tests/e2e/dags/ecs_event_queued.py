"""A DAG for the queued-timeout and terminate tests: one short task, one that runs until it is stopped."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="ecs_event_queued", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def ecs_event_queued() -> None:
    @task(retries=0)
    def quick() -> str:
        return "done"

    @task(retries=0)
    def long_running() -> None:
        time.sleep(600)

    quick()
    long_running()


ecs_event_queued()
