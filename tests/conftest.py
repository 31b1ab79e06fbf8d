"""Shared fixtures: an emulated AWS account (moto, in-process) with the control plane's resources."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

# Before any test module imports aws_cdk: the infra package silences Node's end-of-life banner, which jsii would
# otherwise print on every run.
import infra  # noqa: F401
from tests.support.aws import (
    REGION,
    EcsSetup,
    atomic_moto_requests,
    create_ecs,
    create_queues,
    create_table,
    launcher_environment,
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Emulated AWS with dummy credentials; nothing leaves the process."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws(), atomic_moto_requests():
        yield


@dataclass
class ControlPlane:
    """The emulated control-plane resources and the environment the handlers read."""

    ecs: EcsSetup
    table: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    env: dict[str, str]

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)


@pytest.fixture
def control_plane(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlane]:
    """Create cluster, table and queues, point both handlers at them, and reset their cached clients."""
    from lambdas.launcher import handler as launcher_handler
    from lambdas.status import handler as status_handler

    ecs = create_ecs()
    table = create_table()
    queue_url, queue_arn, dlq_url = create_queues()
    env = launcher_environment(ecs, table, queue_url, dlq_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    launcher_handler.reset()
    status_handler.reset()
    yield ControlPlane(ecs, table, queue_url, queue_arn, dlq_url, env)
    launcher_handler.reset()
    status_handler.reset()


# Reliability and security figures travel in the test reports' user_properties, so they reach the controlling process under
# pytest-xdist too, and are printed together at the end of the run.
_FIGURE = "reliability_figure"
_figures: list[str] = []


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a reliability figure line, e.g. ``R1 duplicate tasks: 0 of 500``."""

    def record(line: str) -> None:
        print(line)
        request.node.user_properties.append((_FIGURE, line))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _figures.extend(str(value) for name, value in report.user_properties if name == _FIGURE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _figures:
        terminalreporter.section("reliability and security figures")
        for line in sorted(_figures):
            terminalreporter.write_line(line)
