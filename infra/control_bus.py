"""The project's EventBridge bus: the control plane's own events, and the route that turns relaunches into launches."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from ecs_event_executor.control.bus import RELAUNCH_REQUESTED, SOURCE

from infra import nag
from infra.queues import DEAD_LETTER_RETENTION, secure_queue

RELAUNCH_MAX_EVENT_AGE = Duration.hours(6)
RELAUNCH_RETRY_ATTEMPTS = 185


class ControlBus(Construct):
    """A custom bus for "Airflow Task ..." events (users add rules to it to alert), plus the relaunch route."""

    def __init__(self, scope: Construct, id_: str, *, bus_name: str) -> None:
        super().__init__(scope, id_)
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=bus_name,
            description="Events of the Airflow ECS event executor: task launched, launch failed, task finished",
        )
        self.dead_letter_queue = secure_queue(self, "DeadLetterQueue", retention_period=DEAD_LETTER_RETENTION)
        nag.acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This is the dead-letter queue of the relaunch rule's target (relaunch requests EventBridge could not "
            "put on the launch queue); its depth raises an alarm.",
        )

    def route_relaunch_requests(self, launch_queue: sqs.IQueue) -> events.Rule:
        """Send each relaunch request's ``detail`` (a launch-queue message) to the launch queue.

        The status Lambda may only write the table and publish to this bus; EventBridge does the enqueueing.
        """
        return events.Rule(
            self,
            "RelaunchRule",
            description="Relaunch requests from the status handler become launch-queue messages",
            event_bus=self.bus,
            event_pattern=events.EventPattern(source=[SOURCE], detail_type=[RELAUNCH_REQUESTED]),
            targets=[
                targets.SqsQueue(
                    launch_queue,
                    message=events.RuleTargetInput.from_event_path("$.detail"),
                    retry_attempts=RELAUNCH_RETRY_ATTEMPTS,
                    max_event_age=RELAUNCH_MAX_EVENT_AGE,
                    dead_letter_queue=self.dead_letter_queue,
                )
            ],
        )
