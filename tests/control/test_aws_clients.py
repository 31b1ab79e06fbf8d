"""The Lambdas' AWS clients: standard retries and timeouts that end every call inside the function timeout."""

from __future__ import annotations

from typing import Any

import pytest
from ecs_event_executor.control.aws_clients import BACKOFF_SECONDS

from infra.launcher import LAUNCHER_TIMEOUT
from infra.reconciler import MAX_TIMEOUT_SECONDS
from infra.status import STATUS_TIMEOUT
from lambdas.launcher import handler as launcher_handler
from lambdas.reconciler import handler as reconciler_handler
from lambdas.status import handler as status_handler
from tests.conftest import ControlPlane

# The reconciler's timeout is its schedule's period (at least a minute), capped at MAX_TIMEOUT_SECONDS.
RECONCILER_MIN_TIMEOUT = min(60, MAX_TIMEOUT_SECONDS)


def clients_of_each_function() -> dict[str, tuple[float, dict[str, Any]]]:
    """Every client each handler's service builds for itself, with that function's timeout."""
    launcher = launcher_handler.launcher()
    tracker = status_handler.tracker()
    reconciler = reconciler_handler.reconciler()
    return {
        "launcher": (
            LAUNCHER_TIMEOUT.to_seconds(),
            {
                "ecs": launcher.ecs,
                "dynamodb": launcher.table.client,
                "events": launcher.bus.client,
                "sqs": launcher_handler.sqs(),
            },
        ),
        "status": (
            STATUS_TIMEOUT.to_seconds(),
            {"dynamodb": tracker.table.client, "events": tracker.bus.client},
        ),
        "reconciler": (
            RECONCILER_MIN_TIMEOUT,
            {"ecs": reconciler.ecs, "dynamodb": reconciler.table.client, "events": reconciler.bus.client},
        ),
    }


@pytest.fixture
def reset_reconciler(control_plane: ControlPlane) -> Any:
    reconciler_handler.reset()
    yield
    reconciler_handler.reset()


def test_every_lambda_client_uses_standard_retries_and_ends_inside_its_function_timeout(
    control_plane: ControlPlane, reset_reconciler: None
) -> None:
    for function, (timeout, clients) in clients_of_each_function().items():
        for service, client in clients.items():
            config = client.meta.config
            where = f"{function}'s {service} client"
            # botocore's defaults: 60 s connect and read timeouts, and the retry mode and attempts of whatever
            # AWS_RETRY_MODE / AWS_MAX_ATTEMPTS say (legacy: 10 attempts for DynamoDB). Pinned, they cannot drift.
            assert config.retries.get("mode") == "standard", (where, config.retries)
            attempts = config.retries.get("total_max_attempts")
            assert attempts is not None, (where, config.retries)
            worst = attempts * (config.connect_timeout + config.read_timeout) + BACKOFF_SECONDS
            # A stuck call ends with an error the handler reports, with time left for the rest of the batch.
            assert worst <= 0.9 * timeout, (where, worst, timeout)
