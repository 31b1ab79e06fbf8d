"""The Lambda handlers' weight (issue 19, P5) and their log volume (the cost's log ingestion): what a cold start
imports, and one INFO line per batch rather than one per message."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from lambdas.launcher import handler as launcher_handler
from tests.conftest import ControlPlane
from tests.support.aws import LambdaContextStub, body_event
from tests.support.ecs_events import task_event
from tests.support.handlers import launch, status_batch
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


def test_the_status_function_logs_one_info_line_per_batch(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    from lambdas.status import handler as status_handler

    tasks = [launch(control_plane)[1] for _ in range(3)]
    caplog.set_level(logging.INFO)
    caplog.clear()
    status_handler.handler(
        status_batch([task_event(t, last_status="RUNNING", version=3) for t in tasks]), LambdaContextStub()
    )
    [summary] = info_lines(caplog)
    assert summary.getMessage() == "status batch"
    assert tuple(vars(summary)[k] for k in ("events", "failed", "results")) == (3, 0, {"Applied": 3})
