"""A DAG for R10: mapped tasks queued one per scheduler loop while the scheduler keeps crashing.

Each task runs for longer than a scheduler takes to restart, so the next scheduler finds it queued or running.
"""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="ecs_event_crash_window", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def ecs_event_crash_window() -> None:
    @task(retries=0)
    def steady(n: int) -> int:
        time.sleep(30)
        return n

    steady.expand(n=list(range(12)))


ecs_event_crash_window()
