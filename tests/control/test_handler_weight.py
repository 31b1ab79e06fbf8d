"""The Lambda handlers' weight (issue 19, P5) and their log volume (the cost's log ingestion): what a cold start
imports, one INFO line per batch rather than one per message, and no item sent back that nobody reads."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from ecs_event_executor.control.launching import Launcher, LauncherSettings, Result
from ecs_event_executor.control.status_tracking import StatusResult, StatusSettings, StatusTracker
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.table import TaskTable

from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import LambdaContextStub, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import invoke_status, launch
from tests.support.requests import launch_request

# Loaded by a cold start but used by neither handler: Powertools' batch package (asyncio, every event data class)
# and boto3 (s3transfer). Each is tens of milliseconds of every cold start.
UNUSED_ON_THE_LAMBDA_PATH = (
    "asyncio",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.data_classes",
    "boto3",
    "s3transfer",
)


@pytest.mark.parametrize("name", ["launcher", "status"])
def test_a_cold_start_imports_only_what_the_handler_uses(name: str) -> None:
    probe = (
        f"import sys, lambdas.{name}.handler; "
        f"print([m for m in {UNUSED_ON_THE_LAMBDA_PATH!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def info_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the INFO (and louder) records of this project's loggers: the handlers' and the services' they call
    (botocore's notes stay below the Lambda runtime's WARNING root level)."""
    ours = ("ecs-event-", "ecs_event_executor", "lambdas")
    return [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith(ours)]


def test_the_launcher_logs_one_info_line_per_batch(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = [launch_request().to_json() for _ in range(3)]
    caplog.set_level(logging.INFO)
    launcher_handler.handler(body_event(bodies, control_plane.queue_arn), LambdaContextStub())
    [summary] = info_lines(caplog)
    assert summary.getMessage() == "launch batch"
    assert tuple(vars(summary)[k] for k in ("messages", "handed_back", "outcomes")) == (3, 0, {"Launched": 3})


def test_the_status_function_prints_nothing_for_a_routine_event(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Log ingestion is billed per byte and per event: a routine event writes no INFO line and no EMF metrics
    (Lambda's own Invocations counts it); its failure would log a WARNING and EventsFailed."""
    from lambdas.status import handler as status_handler

    tasks = [launch(control_plane)[1] for _ in range(3)]
    caplog.set_level(logging.INFO)
    caplog.clear()
    capsys.readouterr()
    for t in tasks:
        invoke_status(task_event(t, last_status="STOPPING", version=4, exit_code=0))
    assert info_lines(caplog) == []
    assert capsys.readouterr().out == ""
    assert status_handler.metrics.metric_set == {}


class ReturnValuesSeen:
    """Record the ReturnValues of every UpdateItem a botocore client sends."""

    def __init__(self, client: Any) -> None:
        self.seen: list[str] = []
        client.meta.events.register("provide-client-params.dynamodb.UpdateItem", self._note)

    def _note(self, params: dict[str, Any], **_: Any) -> None:
        self.seen.append(params.get("ReturnValues", "NONE"))


def test_writes_whose_item_nobody_reads_do_not_ask_for_it(control_plane: ControlPlane) -> None:
    """The launch record and a RUNNING event's write send no item back (nothing reads it: no bus, or no routine
    notifications); the item as it was still comes back when a condition fails (the writes' callers need it)."""
    launcher = Launcher(LauncherSettings.from_env())
    launched = ReturnValuesSeen(launcher.table.client)
    request = launch_request()
    assert launcher.handle(request.to_json()) is Result.LAUNCHED
    assert launched.seen == ["NONE"]
    stored = TaskTable(control_plane.table).get(request.launch_id)
    assert stored is not None and stored.state is TaskState.PENDING and stored.task_arn

    tracker = StatusTracker(StatusSettings.from_env())
    applied = ReturnValuesSeen(tracker.table.client)
    task = control_plane.client("ecs").describe_tasks(
        cluster=control_plane.ecs.cluster, tasks=[stored.task_arn]
    )
    event = task_event(task["tasks"][0], last_status="RUNNING", version=3)
    assert tracker.handle(event) is StatusResult.APPLIED
    assert tracker.handle(event) is StatusResult.STALE  # its duplicate: the item as it was decides
    assert applied.seen == ["NONE", "NONE"]
    assert TaskTable(control_plane.table).get(request.launch_id).state is TaskState.RUNNING  # type: ignore[union-attr]


def test_a_finished_task_is_read_back_only_to_be_announced(control_plane: ControlPlane) -> None:
    """A failed task's notification carries its Airflow key, so that write asks for the item; without a bus it
    does not."""
    events: list[dict[str, Any]] = []
    for bus_name, expected in ((None, ["NONE"]), ("bus", ["ALL_NEW"])):
        _, task = launch(control_plane)
        settings = dataclasses.replace(StatusSettings.from_env(), event_bus_name=bus_name)
        tracker = StatusTracker(settings)
        if bus_name:
            tracker.bus._client = PutEventsRecorder(events)
        seen = ReturnValuesSeen(tracker.table.client)
        failed = task_event(task, last_status="STOPPING", version=5, exit_code=1)
        assert tracker.handle(failed) is StatusResult.FINISHED
        assert seen.seen == expected
    [published] = events
    assert published["dag_id"] == "example" and published["state"] == "FAILED"


class PutEventsRecorder:
    """An EventBridge client that keeps what was put."""

    def __init__(self, into: list[dict[str, Any]]) -> None:
        self.into = into

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.into += [json.loads(e["Detail"]) for e in Entries]
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


# Validators built at import though the handler may never validate them on its path: the launcher never parses an
# ECS event, the status function parses a control message only to relaunch. Each model is milliseconds of import.
NOT_BUILT_AT_IMPORT = {
    "launcher": ("ecs_event_executor.control.ecs_state", ("TaskStateChange", "TaskDetail")),
    "status": ("ecs_event_executor.control.messages", ("LaunchRequest", "RelaunchRequest", "TaskKey")),
}


@pytest.mark.parametrize("name", ["launcher", "status"])
def test_a_cold_start_builds_no_validator_the_handler_may_not_use(name: str) -> None:
    module, models = NOT_BUILT_AT_IMPORT[name]
    probe = (
        f"import importlib, lambdas.{name}.handler; m = importlib.import_module({module!r}); "
        f"print([n for n in {models!r} if getattr(m, n).__pydantic_complete__])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_run_task_check_reads_the_ecs_model_the_client_loaded(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.loaders import JSONFileLoader
    from ecs_event_executor.control import aws_clients, executor_config

    reads: list[str] = []
    load_file = JSONFileLoader.load_file

    def counted(self: JSONFileLoader, file_path: str) -> Any:
        reads.append(file_path)
        return load_file(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", counted)
    monkeypatch.setattr(aws_clients, "_session", None)
    executor_config.run_task_input_shape.cache_clear()
    try:
        aws_clients.lambda_client("ecs")
        assert "overrides" in executor_config.run_task_input_shape().members
    finally:
        executor_config.run_task_input_shape.cache_clear()
    assert len([p for p in reads if "/ecs/" in p and p.endswith("service-2")]) == 1
