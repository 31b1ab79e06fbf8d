"""The executor's own events reach Airflow's event log: saved the way Airflow 3.3's scheduler saves them."""

from __future__ import annotations

import gc

import pytest
import sqlalchemy as sa
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.log import Log
from sqlalchemy.orm import Session

from tests.executor.conftest import ExecutorEnv, queue_all, task_workload

pytestmark = pytest.mark.compat


def test_refused_executor_config_event_is_saved_by_the_scheduler(executor_env: ExecutorEnv) -> None:
    executor = executor_env.executor()
    queue_all(executor, [task_workload("refused", executor_config={"overrides": {"notARunTaskOverride": 1}})])
    assert len(executor._task_event_logs) == 1
    gc.collect()  # whatever holds the row weakly only (SQLAlchemy's instance state) must not be what keeps it

    engine = sa.create_engine("sqlite://")
    Log.__table__.create(engine)
    with Session(engine) as session:
        # Airflow's own code: a generator popping the executor's deque into bulk_save_objects.
        SchedulerJobRunner._process_task_event_logs(executor._task_event_logs, session)
        session.commit()
        rows = session.execute(sa.select(Log.event, Log.task_id, Log.extra)).all()
    assert [(event, task_id) for event, task_id, _ in rows] == [("ecs task invalid executor_config", "t1")]
    assert "notARunTaskOverride" in rows[0].extra
