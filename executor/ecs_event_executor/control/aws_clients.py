"""Build the Lambdas' AWS clients: standard retries and timeouts that keep every call inside the function timeout.

botocore's defaults (legacy retries, up to 10 attempts for DynamoDB, a 60 s read timeout) let one stuck call
outlive the function: the invocation times out and SQS redelivers its whole batch. Every client the services
build for themselves comes from ``lambda_client``; the executor's clients come from the Airflow connection
(``ecs_event_executor.aws``) and are not built here.

They come from botocore alone: boto3 adds nothing the control plane uses and imports s3transfer (tens of
milliseconds of every cold start); a botocore session finds credentials, region and endpoint settings in the
environment as boto3's default session does. In the Lambdas they read the trimmed service models the bundling
step wrote (``botocore_data``): a cold client then reads ~0.4 MB of models, not 3 MB and 400 folder listings.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.model import ServiceModel

from ecs_event_executor.control import botocore_data

# Standard mode: exponential backoff with jitter (at most 2 s, then 4 s between these 3 attempts) and a retry
# quota that stops retrying when a service keeps failing.
ATTEMPTS = 3
BACKOFF_SECONDS = 2 + 4
CONNECT_TIMEOUT_SECONDS = 2
# DynamoDB, SQS and EventBridge answer in milliseconds: 5 s is already an outage. A worst-case call, retries
# included, takes (2 + 5) s x 3 + 6 s = 27 s, inside the shortest function timeout (the status function's 30 s).
READ_TIMEOUT_SECONDS = 5
# RunTask and DescribeTasks can take seconds: (2 + 8) s x 3 + 6 s = 36 s, inside the launcher's and the
# reconciler's 60 s; the launcher also starts no RunTask with less than RUN_TASK_TIME_NEEDED_SECONDS left.
SLOW_READ_TIMEOUT_SECONDS = {"ecs": 8}
# Every request of the control plane is built by this package from values it validated when they were queued or
# read (the launch message's model, the ECS event's, the environment's): botocore's client-side validation would
# check each call again. RunTask's arguments, as ECS will see them (the profile's, the task's executor_config, the
# cost tags), are checked against botocore's own ECS model by ``run_task.build_run_task_kwargs`` before the call:
# a wrongly typed setting fails the launch at once, naming its field path (a permanent failure), where ECS would
# answer a bare SerializationException. Checking them a second time in the client cost ~0.2 ms per launch.
UNVALIDATED_SERVICES = frozenset({"dynamodb", "ecs", "events"})

# A botocore session is not thread-safe while it creates clients: one per process, clients made under a lock.
_lock = threading.Lock()
_session: botocore.session.Session | None = None


def client_config(service: str) -> Config:
    """Return the botocore configuration of the Lambdas' client for ``service``."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=SLOW_READ_TIMEOUT_SECONDS.get(service, READ_TIMEOUT_SECONDS),
        parameter_validation=service not in UNVALIDATED_SERVICES,
    )


def worst_call_seconds(service: str) -> float:
    """Return the longest one call to ``service`` can take, every retry included."""
    config = client_config(service)
    return ATTEMPTS * (config.connect_timeout + config.read_timeout) + BACKOFF_SECONDS


def _shared_session() -> botocore.session.Session:
    # Called under _lock.
    global _session
    if _session is None:
        _session = botocore.session.get_session()
        trimmed = botocore_data.loader()
        if trimmed is not None:
            _session.register_component("data_loader", trimmed)
    return _session


def lambda_client(service: str) -> Any:
    """Return a botocore client for ``service`` (region and credentials from the function's environment)."""
    with _lock:
        return _shared_session().create_client(service, config=client_config(service))


def service_model(service: str) -> ServiceModel:
    """Return botocore's model of ``service`` as the clients read it (its JSON is loaded once per process)."""
    with _lock:
        return _shared_session().get_service_model(service)
