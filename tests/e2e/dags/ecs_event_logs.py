"""A DAG for the task-log and event-log tests: a task whose first try's container is killed as the kernel's OOM
killer would (SIGKILL, exit code 137) and whose retry succeeds, and a task with an invalid executor_config."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="ecs_event_logs", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def ecs_event_logs() -> None:
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def killed_then_ok() -> None:
        try_number = get_current_context()["ti"].try_number
        print(f"container output of try {try_number}")
        if try_number == 1:
            time.sleep(2)  # the supervisor writes the line to the container's stdout first
            # The container's main process (the Task SDK supervisor) and this task, as the OOM killer would.
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    @task(retries=0, executor_config={"overrides": {"notARunTaskOverride": 1}})
    def bad_config() -> None:
        print("never runs")

    killed_then_ok()
    bad_config()


ecs_event_logs()
