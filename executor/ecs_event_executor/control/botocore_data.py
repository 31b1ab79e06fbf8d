"""Write and find the Lambdas' trimmed botocore data: the models of the services they call, without documentation.

A cold botocore client reads ``endpoints.json`` (1.2 MB, every AWS service), the service's model (ECS's is 0.9 MB,
mostly documentation) and its endpoint rules, after listing every one of the ~400 service folders botocore ships
to check that the service exists. On a Lambda cold start that is 70 ms of the first invocation's ~100 ms of
client creation. The bundling step writes, from botocore's own installed data (so it never drifts from the code
that reads it), a directory holding only :data:`SERVICES`: each one's service model with the documentation
removed (every operation and shape kept: the requests on the wire are the same), its endpoint rules, paginators
and waiters, ``endpoints.json`` cut to those services, and the small files every client reads. The Lambdas' clients
load from it alone through botocore's own ``Loader`` search paths (:func:`loader`).

The directory records the botocore version that wrote it; a botocore of another version ignores it and loads its
own full data (a model is only trusted by the code that wrote it). Without the directory (the scheduler, tests,
the local mode) nothing changes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import Loader

# Every service a Lambda builds a client for (``aws_clients.lambda_client``): the launcher's ECS, DynamoDB, SQS
# and control-plane bus clients, the status function's and the reconciler's subsets of them.
SERVICES = ("dynamodb", "ecs", "events", "sqs")
# Model files kept per service: what a client reads when it is created (service model, endpoint rules), and what
# it reads on first use of a paginator or a waiter (the launcher pages ListTasks; nothing waits, but a waiter's
# absence would fail where the full data would not).
SERVICE_FILES = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2")
# Read by every client (the partitions of the endpoint rules, the defaults modes, the retry quotas).
SHARED_FILES = ("partitions", "sdk-default-configuration", "_retry")
# Text for people (the docstrings botocore generates): nothing a request is built or parsed from.
DOCUMENTATION_KEYS = frozenset({"documentation", "documentationUrl"})
# Where the bundling step puts it: beside this module in the Lambdas' layer; absent from a source checkout.
BUNDLED_DIR = Path(__file__).resolve().with_name("_botocore_data")
STAMP = "botocore-version"


def without_documentation(value: Any) -> Any:
    """Return a copy of a botocore model with every documentation string removed."""
    if isinstance(value, dict):
        return {k: without_documentation(v) for k, v in value.items() if k not in DOCUMENTATION_KEYS}
    if isinstance(value, list):
        return [without_documentation(v) for v in value]
    return value


def write(destination: Path, services: Iterable[str] = SERVICES) -> Path:
    """Write the trimmed data of ``services`` from this botocore's installed data into ``destination``."""
    source = Loader()
    services = tuple(services)
    staging = Path(tempfile.mkdtemp(prefix=".botocore-data-", dir=destination.parent))
    try:
        for service in services:
            version = source.determine_latest_version(service, "service-2")
            for name in SERVICE_FILES:
                if service not in source.list_available_services(name):
                    continue  # a service without paginators or waiters
                data = source.load_service_model(service, name, version)
                _dump(staging / service / version / f"{name}.json", without_documentation(data))
        endpoints = source.load_data("endpoints")
        for partition in endpoints["partitions"]:
            partition["services"] = {k: v for k, v in partition["services"].items() if k in services}
        _dump(staging / "endpoints.json", endpoints)
        for name in SHARED_FILES:
            _dump(staging / f"{name}.json", source.load_data(name))
        # Written last: a directory without its stamp is never used.
        (staging / STAMP).write_text(botocore.__version__)
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))


def loader(directory: Path | None = None) -> Loader | None:
    """Return a loader reading ``directory`` (the bundled one by default) alone, or None when it is absent or
    another botocore version wrote it."""
    directory = directory or BUNDLED_DIR
    try:
        written_by = (directory / STAMP).read_text().strip()
    except OSError:
        return None
    if written_by != botocore.__version__:
        return None
    # Not the default search paths: botocore would list its ~400 service folders to find each service.
    return Loader(extra_search_paths=[str(directory)], include_default_search_paths=False)
