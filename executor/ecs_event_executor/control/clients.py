"""Create the control plane's AWS clients from botocore alone.

boto3 adds nothing the control plane uses and imports s3transfer (tens of milliseconds of every Lambda cold start);
a botocore session finds credentials, region and endpoint settings in the environment as boto3's default session
does.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
from botocore.config import Config

# botocore sessions are not thread-safe while they create clients: one per process, clients made under a lock.
_lock = threading.Lock()
_session: botocore.session.Session | None = None

# The task table's and the bus's requests are built by this package from values it validated when they were queued
# or read (the launch message's model, the ECS event's): botocore's client-side validation would check each call
# again. RunTask keeps it: a wrongly typed setting that got past the environment's check fails at once, naming its
# field path (ParamValidationError, a permanent failure), where ECS would answer a bare SerializationException.
UNVALIDATED = Config(parameter_validation=False)


def client(service: str, config: Config | None = None) -> Any:
    """Return a new botocore client for ``service`` (``config`` merged over the defaults)."""
    global _session
    with _lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client(service, config=config)
