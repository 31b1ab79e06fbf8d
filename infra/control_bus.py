"""The project's EventBridge bus: the control plane's own events, and the route that turns relaunches into launches."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from ecs_event_executor.control.bus import RELAUNCH_EVENT_PATTERN

from infra.queues import dead_letter_queue

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
        self.dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            holds="This is the dead-letter queue of the relaunch rule's target (relaunch requests EventBridge could not "
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
            # Only relaunch requests (detail.kind = relaunch): not whatever a publisher labels as one.
            event_pattern=events.EventPattern(
                source=RELAUNCH_EVENT_PATTERN["source"],
                detail_type=RELAUNCH_EVENT_PATTERN["detail-type"],
                detail=RELAUNCH_EVENT_PATTERN["detail"],
            ),
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

    def allow_only_publishers(self, role_arns: Sequence[str]) -> iam.PolicyStatement:
        """Deny PutEvents on the bus to every principal but the control plane's roles.

        The relaunch rule turns events on this bus into launch-queue messages, and users route alerts from it:
        only the launcher, the status handler and the reconciler may publish. Everyone else, whatever their IAM
        policy grants (``events:*``), is denied (``aws:PrincipalArn`` matches a role's every session).
        """
        statement = iam.PolicyStatement(
            sid="OnlyTheControlPlanePublishes",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["events:PutEvents"],
            resources=[self.bus.event_bus_arn],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": list(role_arns)}},
        )
        # The L1 resource: EventBus.add_to_resource_policy sets a deprecated property and warns at every synth.
        events.CfnEventBusPolicy(
            self,
            "BusPolicy",
            event_bus_name=self.bus.event_bus_name,
            statement_id=statement.sid or "OnlyTheControlPlanePublishes",
            statement=statement.to_statement_json(),
        )
        return statement
