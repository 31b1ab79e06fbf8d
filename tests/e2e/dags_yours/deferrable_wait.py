"""A DAG of "your own" for the local mode: a deferrable sensor (finished by the triggerer) and a task that reads a
setting given with ``--airflow-config``."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task

DAG_ID = "deferrable_wait"


@dag(dag_id=DAG_ID, schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def deferrable_wait() -> None:
    # Rendered when the worker runs it, so it always waits (defers) a few seconds, however late the worker starts.
    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time="{{ (macros.datetime.utcnow() + macros.timedelta(seconds=8)).isoformat() }}",
    )

    @task
    def read_setting() -> str:
        from airflow.configuration import conf

        return str(conf.get("local_mode_e2e", "marker", fallback="unset"))

    wait >> read_setting()


deferrable_wait()
