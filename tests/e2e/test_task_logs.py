"""Through the API server's HTTP log endpoint: a finished try's log and an earlier failed try's (its container
killed as by the OOM killer), each with its container output; the executor's own events in Airflow's event log."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local.procs import wait_until
from harness.local.stack import LocalStack, StackOptions

pytestmark = pytest.mark.e2e

DAG_ID = "ecs_event_logs"
DAGS = Path(__file__).resolve().parent / "dags"
OOM = "OutOfMemoryError: Container killed due to memory usage"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(StackOptions(dags_folder=DAGS)) as running:
        running.wait_dag(DAG_ID)
        yield running


def _log(stack: LocalStack, run_id: str, task_id: str, try_number: int) -> str:
    """Return the text of one try's log as the UI gets it (the structured log endpoint, every line)."""
    path = (
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
    )
    content = stack.api("GET", path)["content"]
    return "\n".join(json.dumps(line) if isinstance(line, dict) else str(line) for line in content)


def test_finished_and_earlier_failed_tries_logs_and_the_executor_event(stack: LocalStack) -> None:
    run_id = stack.trigger(DAG_ID, "e2e_logs")

    def states() -> dict[str, tuple[str | None, int]]:
        return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in stack.task_instances(DAG_ID, run_id)}

    wait_until(
        lambda: (
            states().get("killed_then_ok") == ("success", 2)
            and states().get("bad_config", (None,))[0] == "failed"
        ),
        timeout=240,
        what="killed_then_ok to succeed on its retry and bad_config to fail",
    )
    # The earlier, failed try: its container's output, and the control plane's reason naming the OOM kill.
    first = _log(stack, run_id, "killed_then_ok", 1)
    assert "container output of try 1" in first, first
    assert f"the Airflow container exited with code 137: {OOM}" in first, first
    assert "container output of try 2" not in first

    # The finished try: its own container's output, read after the end. Airflow hears success from the worker
    # before the container has exited and its last lines are shipped: the log is whole once the launch finished.
    def finished_log() -> str | None:
        text = _log(stack, run_id, "killed_then_ok", 2)
        return text if "is SUCCEEDED" in text else None

    second = wait_until(finished_log, timeout=60, what="try 2's launch to finish")
    assert "container output of try 2" in second and "container output of try 1" not in second, second

    # The executor's refusal of the invalid executor_config reached Airflow's event log (a dropped event there
    # would mean Log rows failed to save: the SQLAlchemy version Airflow is tested with matters).
    query = urllib.parse.urlencode(
        {"dag_id": DAG_ID, "run_id": run_id, "event": "ecs task invalid executor_config"}
    )
    events = stack.api("GET", f"/api/v2/eventLogs?{query}")["event_logs"]
    assert [e["task_id"] for e in events] == ["bad_config"], events
    assert "notARunTaskOverride" in (events[0]["extra"] or ""), events
    # The failed try's info (reason and the container's last lines) is in the event log too.
    query = urllib.parse.urlencode({"dag_id": DAG_ID, "run_id": run_id, "event": "ecs task failed"})
    failed = stack.api("GET", f"/api/v2/eventLogs?{query}")["event_logs"]
    assert any(
        OOM in (e["extra"] or "") and "container output of try 1" in (e["extra"] or "") for e in failed
    ), failed
