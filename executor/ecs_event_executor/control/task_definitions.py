"""Task definitions derived for a task's image: registered once, reused, deregistered when unused.

A task whose ``executor_config`` names an ``image`` runs a task definition derived from its launch profile's: the
same definition (roles, network mode, size, log configuration, other containers) with that image in the Airflow
container. Its family is deterministic, ``<base family>-derived-<hash of the derived definition>``, so every
launcher derives the same name, and IAM can scope RegisterTaskDefinition and RunTask to ``<base family>-derived-*``.

``DerivedTaskDefinitions.resolve`` (the launcher) returns the revision to run: from memory, else from the family's
registration item (``tasks/registrations.py``), else it claims the item with a conditional write and registers
(or, after a crash between RegisterTaskDefinition and the record, adopts the revision ECS already has), so racing
launchers register a definition once; the others come back after ``RegistrationInProgress``'s delay.
``collect_unused`` (the reconciler) deregisters derived families no launch used for the configured days.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ecs_event_executor.control import aws_clients
from ecs_event_executor.control.executor_config import ExecutorConfigError
from ecs_event_executor.control.tasks.registrations import Registration, Registrations

log = logging.getLogger(__name__)

DERIVED_MARK = "-derived-"
HASH_CHARS = 12
# ECS: a family has at most 255 letters, digits, hyphens and underscores.
FAMILY_MAX_CHARS = 255
# A launcher re-reads (and stamps the use of) a registration it holds in memory at most this often, so a
# registration in use is stamped hourly and the reconciler's unused days are counted from a real last use.
MEMORY_SECONDS = 3600
# How long a launcher may hold the right to register a family (DescribeTaskDefinition + RegisterTaskDefinition).
CLAIM_LEASE_SECONDS = 30
# A launcher that finds another registering the family comes back after this long.
REGISTRATION_WAIT_SECONDS = 2


class RegistrationInProgress(Exception):
    """Another launcher is registering the family: the launch should come back in ``delay_seconds``."""

    def __init__(self, family: str) -> None:
        super().__init__(f"task definition family {family} is being registered by another launcher")
        self.delay_seconds = REGISTRATION_WAIT_SECONDS


@functools.lru_cache(maxsize=1)
def _registrable_fields() -> frozenset[str]:
    """Return what RegisterTaskDefinition accepts, from botocore's ECS service model (not a list of ours)."""
    model = aws_clients.service_model("ecs")
    return frozenset(model.operation_model("RegisterTaskDefinition").input_shape.members)


def family_of(task_definition: str) -> str:
    """Return the family of a task definition ARN, ``family:revision`` or family."""
    return task_definition.rsplit("/", 1)[-1].split(":", 1)[0]


def derived_prefix(base_family: str) -> str:
    """Return the prefix every family derived from ``base_family`` starts with (what IAM is scoped to)."""
    room = FAMILY_MAX_CHARS - len(DERIVED_MARK) - HASH_CHARS
    return base_family[:room] + DERIVED_MARK


def derive(base: Mapping[str, Any], *, container_name: str, image: str) -> dict[str, Any]:
    """Return RegisterTaskDefinition arguments: ``base`` (a DescribeTaskDefinition ``taskDefinition``) with
    ``image`` in the Airflow container, under its deterministic derived family."""
    fields = _registrable_fields()
    derived = {k: copy.deepcopy(v) for k, v in base.items() if k in fields and k not in ("family", "tags")}
    containers = derived.get("containerDefinitions") or []
    ours = next((c for c in containers if c.get("name") == container_name), None)
    if ours is None:
        raise ExecutorConfigError(
            "image",
            f"the task definition {base.get('taskDefinitionArn')} has no container {container_name!r}",
        )
    ours["image"] = image
    digest = hashlib.sha256(json.dumps(derived, sort_keys=True, default=str).encode()).hexdigest()[
        :HASH_CHARS
    ]
    derived["family"] = derived_prefix(str(base["family"])) + digest
    return derived


class DerivedTaskDefinitions:
    """Resolve (base task definition, image) to a registered revision; the launcher holds one."""

    def __init__(
        self,
        registrations: Registrations,
        ecs: Callable[[], Any],
        *,
        container_name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registrations = registrations
        self._ecs = ecs
        self.container_name = container_name
        self._clock = clock
        self._bases: dict[str, tuple[dict[str, Any], float]] = {}
        self._known: dict[str, tuple[str, float]] = {}  # family -> (revision ARN, when last read or stamped)
        # A batch's launches run on threads: those of one family wait for the one resolving it, then use memory.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def resolve(self, base_task_definition: str, image: str) -> str:
        """Return the task definition to run ``image`` with: ``base_task_definition`` itself when its container
        already runs that image, else the derived revision (registered on first use). Raises
        RegistrationInProgress, ExecutorConfigError (no such container) or the ECS client's errors."""
        base = self._describe(base_task_definition)
        containers: list[dict[str, Any]] = base.get("containerDefinitions") or []
        container = next((c for c in containers if c.get("name") == self.container_name), {})
        if container.get("image") == image:
            return base_task_definition
        derived = derive(base, container_name=self.container_name, image=image)
        family = derived["family"]
        with self._locks_lock:
            lock = self._locks.setdefault(family, threading.Lock())
        with lock:
            now = self._clock()
            known = self._known.get(family)
            if known is not None and now - known[1] < MEMORY_SECONDS:
                return known[0]
            arn = self._from_table(family) or self._register(family, derived)
            self._known[family] = (arn, now)
            return arn

    def _describe(self, task_definition: str) -> dict[str, Any]:
        cached = self._bases.get(task_definition)
        # A revision never changes; a bare family means its latest revision, re-read with the memory period.
        if cached is not None and (
            ":" in family_or_revision(task_definition) or self._clock() - cached[1] < MEMORY_SECONDS
        ):
            return cached[0]
        described = self._ecs().describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
        self._bases[task_definition] = (described, self._clock())
        return dict(described)

    def _from_table(self, family: str) -> str | None:
        registration = self.registrations.get(family)
        arn = registration.task_definition_arn if registration else None
        if arn is None:
            return None
        # The stamp fails only if the reconciler deleted the item in between: register again then.
        return arn if self.registrations.mark_used(family, arn) else None

    def _register(self, family: str, derived: dict[str, Any]) -> str:
        if not self.registrations.claim(family, lease_seconds=CLAIM_LEASE_SECONDS):
            raise RegistrationInProgress(family)
        arn = self._active_revision(family)
        if arn is None:
            arn = str(self._ecs().register_task_definition(**derived)["taskDefinition"]["taskDefinitionArn"])
            log.info("registered a derived task definition", extra={"family": family, "task_definition": arn})
        self.registrations.record(family, arn)
        return arn

    def _active_revision(self, family: str) -> str | None:
        """Return the family's newest ACTIVE revision (a claim holder that crashed after registering left one)."""
        resp = self._ecs().list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC")
        for arn in resp.get("taskDefinitionArns") or []:
            if family_of(arn) == family:
                return str(arn)
        return None


def family_or_revision(task_definition: str) -> str:
    """Return the ``family[:revision]`` part of a task definition reference."""
    return task_definition.rsplit("/", 1)[-1]


@dataclass
class CleanupReport:
    families: int = 0
    deregistered: int = 0
    kept: int = 0
    adopted: int = 0


def collect_unused(
    ecs: Any,
    registrations: Registrations,
    base_families: Iterable[str],
    *,
    unused_days: int,
    now_ms: int,
) -> CleanupReport:
    """Deregister the active revisions of derived families no launch used for ``unused_days``.

    ECS says which derived families exist (ListTaskDefinitionFamilies by each base family's derived prefix); the
    registration items say when each was last used. A family's item is deleted first, on the condition that its
    last use is still the one read, and only then are the revisions listed before it deregistered: a launcher that
    used the family in between keeps it, and one that registers it again after the delete makes a new revision.
    A family found without an item (its item was lost) gets one: its unused time starts now.
    """
    report = CleanupReport()
    cutoff = now_ms - unused_days * 24 * 3600 * 1000
    families: list[str] = []
    for base in dict.fromkeys(base_families):
        paginator = ecs.get_paginator("list_task_definition_families")
        for page in paginator.paginate(familyPrefix=derived_prefix(base), status="ACTIVE"):
            families.extend(page.get("families") or [])
    report.families = len(families)
    found = registrations.get_many(families)
    for family in families:
        revisions = _active_revisions(ecs, family)
        registration: Registration | None = found.get(family)
        if registration is None:
            if revisions and registrations.adopt(family, revisions[0]):
                report.adopted += 1
            continue
        if registration.last_used_at > cutoff or not registrations.forget_unused(registration):
            report.kept += 1
            continue
        for arn in revisions:
            ecs.deregister_task_definition(taskDefinition=arn)
            report.deregistered += 1
        log.info(
            "deregistered an unused derived task definition", extra={"family": family, "revisions": revisions}
        )
    return report


def _active_revisions(ecs: Any, family: str) -> list[str]:
    arns: list[str] = []
    paginator = ecs.get_paginator("list_task_definitions")
    for page in paginator.paginate(familyPrefix=family, status="ACTIVE", sort="DESC"):
        arns.extend(a for a in page.get("taskDefinitionArns") or [] if family_of(a) == family)
    return arns
