"""The launch queue, its dead-letter queue and the launcher Lambda that turns messages into ECS tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from ecs_event_executor.control import environment as env_vars

from infra.python_function import PythonFunction, log_retention
from infra.queues import dead_letter_queue, grant_send, secure_queue
from infra.settings import Settings

# A batch makes at most 10 RunTask calls, concurrently, each after a token from the environment's pacer (at the
# default share of 10 calls per second, the last waits 1 s); throttled launches are retried later by changing the
# message's visibility, never by sleeping, so this is generous.
LAUNCHER_TIMEOUT = Duration.seconds(60)
BATCH_SIZE = 10
MAX_BATCHING_WINDOW = Duration.seconds(1)
# The redrive only catches messages whose handling crashed repeatedly: throttling is retried by the launcher
# (visibility backoff) and malformed messages are sent to the DLQ by the launcher itself, with the reason.
MAX_RECEIVE_COUNT = 50
# Most of an invocation is waiting (for the pacer's RunTask tokens: ~1 s per batch of 10 in a burst), and Lambda
# bills waiting by memory: 128 MB, the smallest size, halves that cost against 256 MB. The CPU share halves too; a
# batch's CPU (about 10 x 70 ms at this share, make bench) still fits inside the pacer's waits, and the process
# peaks near 60 MB (the handler and its four clients). A cold start takes longer (the imports run at a
# fourteenth of a vCPU: a few seconds), once per execution environment. The stack setting launcherMemoryMb (default
# 128) trades that back: 256 halves a cold start for about $0.40 more per million tasks (make bench).


def queue_visibility_timeout(function_timeout: Duration, batching_window: Duration) -> Duration:
    """Return the visibility AWS recommends for a Lambda-consumed queue: 6x the timeout plus the batching window."""
    return Duration.seconds(6 * function_timeout.to_seconds() + batching_window.to_seconds())


def launcher_run_task_rate(settings: Settings) -> str:
    """Return one launcher execution environment's share of the account's RunTask rate (calls per second)."""
    return f"{settings.run_task_calls_per_second / settings.launcher_max_concurrency:g}"


class LauncherFunction(Construct):
    """Deploy ``lambdas/launcher`` (the ``control.launching`` service) behind the launch queue and its DLQ.

    Partial batch responses, bounded concurrency.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: Settings,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, id_)
        # Both hold launch messages, whose commands carry workload tokens: the stack's key encrypts them if set.
        self.dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            encryption_key=encryption_key,
            holds="This is the launch queue's dead-letter queue; a dead-letter queue of its own would only move the "
            "problem. Its depth raises an alarm.",
        )
        self.queue = secure_queue(
            self,
            "Queue",
            encryption_key=encryption_key,
            visibility_timeout=queue_visibility_timeout(LAUNCHER_TIMEOUT, MAX_BATCHING_WINDOW),
            retention_period=Duration.seconds(settings.queue_retention_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        self.handler = PythonFunction(
            self,
            "Handler",
            handler="launcher",
            function_name=f"{settings.name_prefix}-launcher",
            description="Starts one ECS task per launch-queue message (Airflow ECS event executor)",
            layer=layer,
            timeout=LAUNCHER_TIMEOUT,
            memory_size=settings.launcher_memory_mb,
            log_retention=log_retention(settings.log_retention_days),
            environment={
                env_vars.LAUNCH_QUEUE_URL: self.queue.queue_url,
                env_vars.DEAD_LETTER_QUEUE_URL: self.dead_letter_queue.queue_url,
                # Apply a batch's messages at once, each environment pacing RunTask to its share of the
                # account's rate, so the launchers together launch at the quota and are not throttled.
                env_vars.LAUNCH_PARALLELISM: str(BATCH_SIZE),
                env_vars.LAUNCHER_RUN_TASK_RATE: launcher_run_task_rate(settings),
                **environment,
            },
        )
        self.function = self.handler.function
        self.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                max_batching_window=MAX_BATCHING_WINDOW,
                report_batch_item_failures=True,
                # Bounds parallel RunTask callers: ECS allows 20 RunTask calls per second per account and region.
                max_concurrency=settings.launcher_max_concurrency,
            )
        )
        grant_send(self.dead_letter_queue, self.function)

    def allow_only_senders(
        self, scheduler_role_arns: Sequence[str], relaunch_rule_arn: str
    ) -> iam.PolicyStatement:
        """Deny SendMessage on the launch queue to every principal but the schedulers' roles and the relaunch rule.

        A message on this queue becomes RunTask with the task role, so ``sqs:SendMessage`` from a broad policy
        (``sqs:*``, PowerUser) must not be enough. The deny names who may send: a principal whose ARN is one of
        ``scheduler_role_arns`` (``aws:PrincipalArn`` is the role's ARN for any of its sessions), or EventBridge
        delivering for the relaunch rule (``aws:SourceArn``). Both keys are absent for everyone else, and a
        negated operator on an absent key matches, so everyone else is denied, the account's admins included.
        """
        not_allowed: dict[str, list[str]] = {"aws:SourceArn": [relaunch_rule_arn]}
        if scheduler_role_arns:
            not_allowed["aws:PrincipalArn"] = list(scheduler_role_arns)
        statement = iam.PolicyStatement(
            sid="OnlySchedulersAndTheRelaunchRuleSend",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["sqs:SendMessage"],
            resources=[self.queue.queue_arn],
            conditions={"ArnNotEquals": not_allowed},
        )
        self.queue.add_to_resource_policy(statement)
        return statement
