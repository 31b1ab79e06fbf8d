"""Events the control plane publishes to its own EventBridge bus, so users route alerts with ordinary rules.

All have ``source`` = SOURCE. ``RELAUNCH_REQUESTED`` also drives the control plane itself: a rule on the bus
sends its ``detail`` (a ``relaunch`` queue message) to the launch queue, because the status handler may only
write the table and publish to the bus.

Custom events are billed per event, so routine notifications (a task launched, a task finished successfully) are
published only when the stack's ``publishAllEvents`` (the Lambdas' ``PUBLISH_ALL_EVENTS``) is true. Failures
(``LAUNCH_FAILED``, a failed or cancelled ``TASK_FINISHED``) and ``RELAUNCH_REQUESTED`` are always published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ecs_event_executor.control.aws_clients import lambda_client

SOURCE = "airflow.ecs-event-executor"
TASK_LAUNCHED = "Airflow Task Launched"
LAUNCH_FAILED = "Airflow Task Launch Failed"
TASK_FINISHED = "Airflow Task Finished"
RELAUNCH_REQUESTED = "Airflow Task Relaunch Requested"
DETAIL_TYPES = (TASK_LAUNCHED, LAUNCH_FAILED, TASK_FINISHED, RELAUNCH_REQUESTED)
# The pattern of the rule that forwards relaunch requests to the launch queue. ``source`` and ``detail-type`` are
# whatever a publisher says they are on a custom bus, so the rule also matches what only a relaunch request's
# detail carries, ``kind: relaunch``: a launch message put in ``detail`` is not forwarded (and the bus's policy
# lets only the control plane's roles publish at all).
RELAUNCH_EVENT_PATTERN: dict[str, Any] = {
    "source": [SOURCE],
    "detail-type": [RELAUNCH_REQUESTED],
    "detail": {"kind": ["relaunch"]},
}

log = logging.getLogger(__name__)


class ControlPlaneBus:
    """Publish control-plane events; with no bus configured, publishing is a no-op."""

    def __init__(self, bus_name: str | None, *, client: Any | None = None, publish_all: bool = False) -> None:
        self.bus_name = bus_name
        self._client = client
        self.publish_all = publish_all

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = lambda_client("events")
        return self._client

    def publishes(self, *, routine: bool = False) -> bool:
        """Return whether ``publish`` would send a notification (a routine one only with ``publish_all``)."""
        return bool(self.bus_name) and (self.publish_all or not routine)

    def publish(
        self, detail_type: str, detail: Mapping[str, Any], *, required: bool = False, routine: bool = False
    ) -> None:
        """Publish one event. Notifications are best effort; a ``required`` event raises if it was not accepted.

        A ``routine`` notification is dropped unless ``publish_all`` is set.
        """
        if routine and not self.publish_all:
            return
        if not self.bus_name:
            if required:
                raise RuntimeError(f"no EVENT_BUS_NAME configured to publish {detail_type!r}")
            return
        try:
            resp = self.client.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(detail, default=str),
                        "EventBusName": self.bus_name,
                    }
                ]
            )
            if resp.get("FailedEntryCount"):
                raise RuntimeError(f"EventBridge refused {detail_type!r}: {resp.get('Entries')}")
        except Exception:
            if required:
                raise
            log.warning("could not publish %s", detail_type, exc_info=True)
