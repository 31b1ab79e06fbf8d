"""The stack: composes the units, wires them together, makes the grants and prints what Airflow needs."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Environment, Fn, Stack, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import Construct
from ecs_event_executor.control import environment as env_vars

from infra import bundling
from infra.control_bus import ControlBus
from infra.launcher import LauncherFunction
from infra.observability import Monitoring
from infra.reconciler import LOST_METRIC, ReconcilerFunction
from infra.reconciler import METRICS as RECONCILER_METRICS
from infra.scheduler_access import LogReaderAccess, SchedulerAccess
from infra.settings import Settings
from infra.status import StatusFunction
from infra.task_runtime import TaskRuntime
from infra.tasks_table import TasksTable

STACK_ID = "AirflowEcsEventExecutor"
# The executor's configuration section; each output line is ready to paste into the scheduler's environment.
AIRFLOW_ENV_PREFIX = "AIRFLOW__ECS_EVENT_EXECUTOR__"


class EcsEventExecutorStack(Stack):
    """The whole control plane of the Airflow ECS event executor in one stack."""

    def __init__(self, scope: Construct, id_: str, *, settings: Settings) -> None:
        env = Environment(account=settings.account, region=settings.region) if settings.region else None
        super().__init__(
            scope,
            id_,
            env=env,
            description="Airflow ECS event executor: launch queue, launcher, ECS status events, reconciler, tasks table",
        )
        self.settings = settings
        prefix = settings.name_prefix

        # A customer-managed key (kmsKeyArn) for the launch queue and its DLQ, the table and the task log group.
        self.encryption_key = (
            kms.Key.from_key_arn(self, "EncryptionKey", settings.kms_key_arn)
            if settings.kms_key_arn
            else None
        )
        self.runtime = TaskRuntime(self, "TaskRuntime", settings=settings, encryption_key=self.encryption_key)
        self.tasks = TasksTable(
            self,
            "Tasks",
            encryption_key=self.encryption_key,
            recovery_days=settings.point_in_time_recovery_days,
        )
        self.control_bus = ControlBus(self, "ControlBus", bus_name=f"{prefix}-events")
        self.layer = lambda_.LayerVersion(
            self,
            "RuntimeLayer",
            code=bundling.runtime_layer_code(),
            compatible_runtimes=[bundling.RUNTIME],
            compatible_architectures=[bundling.ARCHITECTURE],
            description=(
                f"aws-lambda-powertools {bundling.locked_version('aws-lambda-powertools')}, pydantic "
                f"{bundling.locked_version('pydantic')} and the ecs_event_executor control-plane package"
            ),
        )

        common = {
            env_vars.TASKS_TABLE_NAME: self.tasks.table.table_name,
            env_vars.EVENT_BUS_NAME: self.control_bus.bus.event_bus_name,
            env_vars.FINISHED_TTL_SECONDS: str(settings.finished_ttl_seconds),
            env_vars.CONTAINER_NAME: settings.container_name,
            env_vars.CLUSTER: self.runtime.cluster_arn,
            env_vars.PUBLISH_ALL_EVENTS: "true" if settings.publish_all_events else "false",
            # The launch profiles: their clusters' events are ours too, their task definitions have derived ones.
            **self.runtime.profile_environment(),
        }
        # One stack per team: the launcher refuses messages of any other team.
        team = {env_vars.TEAM: settings.team} if settings.team else {}
        self.launcher = LauncherFunction(
            self,
            "Launcher",
            settings=settings,
            layer=self.layer,
            environment={**common, **self.runtime.launch_environment(), **team},
            encryption_key=self.encryption_key,
        )
        self.status = StatusFunction(
            self,
            "Status",
            settings=settings,
            layer=self.layer,
            cluster_arns=self.runtime.cluster_arns,
            environment=common,
            encryption_key=self.encryption_key,
        )
        self.reconciler = ReconcilerFunction(
            self,
            "Reconciler",
            settings=settings,
            layer=self.layer,
            environment={
                **common,
                **self.runtime.cleanup_environment(),
                env_vars.FAILED_EVENTS_QUEUE_URL: self.status.failed_events_queue.queue_url,
            },
        )
        # Relaunch requests (from the status handler, and from the reconciler for lost launch messages).
        self.relaunch_rule = self.control_bus.route_relaunch_requests(self.launcher.queue)
        # Who may start containers: only the schedulers and the relaunch rule send to the launch queue, only
        # the control plane publishes to its bus (docs/security.md).
        self.launcher.allow_only_senders(settings.scheduler_role_arns, self.relaunch_rule.rule_arn)
        self.control_bus.allow_only_publishers(
            [
                f.role.role_arn
                for f in (self.launcher.function, self.status.function, self.reconciler.function)
                if f.role
            ]
        )

        # Grants: least privilege, one line per permission. Item actions follow what each handler's TaskTable
        # calls do: put_item creates a launch (launcher); update_item notes the heartbeat; get_item reads an item.
        self.runtime.grant_launch(self.launcher.function)
        self.tasks.grant_item_actions(self.launcher.function, "GetItem", "PutItem", "UpdateItem")
        self.tasks.grant_item_actions(self.status.function, "GetItem", "UpdateItem")
        # BatchGetItem: the stale index holds keys only, the reconciler reads the items themselves.
        # DeleteItem: a derived task definition's registration item, before the reconciler deregisters it.
        self.tasks.grant_item_actions(
            self.reconciler.function, "GetItem", "BatchGetItem", "UpdateItem", "DeleteItem"
        )
        self.tasks.grant_stale_index_query(self.reconciler.function)
        self.runtime.grant_describe_tasks(self.reconciler.function)
        # A launch past its deadline asks ECS whether an earlier delivery started its task (Launcher.find_task).
        self.runtime.grant_describe_tasks(self.launcher.function)
        # The status function's failed events: the reconciler replays them (receive, then delete once applied).
        self.status.failed_events_queue.grant(
            self.reconciler.function, "sqs:ReceiveMessage", "sqs:DeleteMessage"
        )
        if self.encryption_key is not None:
            self.encryption_key.grant_decrypt(self.reconciler.function)
        self.runtime.grant_derived_cleanup(self.reconciler.function)
        self.control_bus.bus.grant_put_events_to(self.launcher.function)
        self.control_bus.bus.grant_put_events_to(self.status.function)
        self.control_bus.bus.grant_put_events_to(self.reconciler.function)

        self.scheduler_access = SchedulerAccess(
            self,
            "SchedulerAccess",
            queue_arn=self.launcher.queue.queue_arn,
            table_arn=self.tasks.table.table_arn,
            index_arn=self.tasks.index_arn,
            log_group_arn=self.runtime.log_group_arn,
            encryption_key_arn=settings.kms_key_arn,
        )
        self.log_reader_access = LogReaderAccess(
            self,
            "LogReaderAccess",
            table_arn=self.tasks.table.table_arn,
            log_group_arn=self.runtime.log_group_arn,
            encryption_key_arn=settings.kms_key_arn,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            launch_queue=self.launcher.queue,
            status_function=self.status.function,
            dead_letter_queues=[
                ("launch", self.launcher.dead_letter_queue),
                ("ecs-events", self.status.dead_letter_queue),
                ("status-failed-events", self.status.failed_events_queue),
                ("relaunch", self.control_bus.dead_letter_queue),
            ],
            functions=[
                ("launcher", self.launcher.function),
                ("status", self.status.function),
                ("reconciler", self.reconciler.function),
            ],
            lost_tasks=self.reconciler.metric(LOST_METRIC),
            reconciler_metrics=[self.reconciler.metric(name) for name in RECONCILER_METRICS],
        )
        self._outputs()

    @property
    def availability_zones(self) -> list[str]:
        """Use the configured zones, so a stack with a region set needs no AZ lookup (synth stays offline)."""
        if self.settings.availability_zones:
            return list(self.settings.availability_zones)
        return super().availability_zones

    def _outputs(self) -> None:
        s = self.settings
        values = {
            "QueueUrl": ("Launch queue URL ([ecs_event_executor] queue_url)", self.launcher.queue.queue_url),
            "TableName": ("Tasks table ([ecs_event_executor] table_name)", self.tasks.table.table_name),
            "Region": ("Region ([ecs_event_executor] region_name)", Aws.REGION),
            "Cluster": ("ECS cluster the tasks run on", self.runtime.cluster_arn),
            "TaskDefinition": ("Task definition of the Airflow workers", self.runtime.task_definition_arn),
            "LogGroup": (
                "Log group of the Airflow workers ([ecs_event_executor] log_group)",
                self.runtime.log_group_name,
            ),
            "EventBusName": (
                "EventBridge bus with the control plane's events",
                self.control_bus.bus.event_bus_name,
            ),
            "SchedulerPolicyArn": (
                "Managed policy to attach to the Airflow scheduler's role",
                self.scheduler_access.policy.managed_policy_arn,
            ),
            "LogReaderPolicyArn": (
                "Managed policy to attach to the Airflow API server's role (reads task logs; cannot launch)",
                self.log_reader_access.policy.managed_policy_arn,
            ),
            # What `ecs-event-executor replay-dlq --dlq-url ... --to-queue ...` takes after a fix.
            "LaunchDeadLetterQueueUrl": (
                "Launch DLQ (replay to QueueUrl)",
                self.launcher.dead_letter_queue.queue_url,
            ),
            "StatusDeadLetterQueueUrl": (
                "ECS-events DLQ: events EventBridge could not deliver (replay-dlq applies them)",
                self.status.dead_letter_queue.queue_url,
            ),
            "StatusFailedEventsQueueUrl": (
                "ECS events whose status invocation failed (the reconciler replays them; so does replay-dlq)",
                self.status.failed_events_queue.queue_url,
            ),
        }
        for name, (description, value) in values.items():
            CfnOutput(self, name, description=description, value=value)
        airflow = {
            "QUEUE_URL": self.launcher.queue.queue_url,
            "TABLE_NAME": self.tasks.table.table_name,
            "REGION_NAME": Aws.REGION,
            "LOG_GROUP": self.runtime.log_group_name,
            "LOG_STREAM_PREFIX": s.log_stream_prefix,
            "CONTAINER_NAME": s.container_name,
            # The profile names and policy, and the allowed images, so the executor refuses at queue time.
            "LAUNCH_PROFILES": ",".join(s.launch_profiles) or "default",
            "UNKNOWN_QUEUE": s.unknown_queue,
            "ALLOWED_IMAGES": Fn.join(",", self.runtime.allowed_images),
        }
        if s.worker_airflow_version:  # the executor warns at start when the scheduler's Airflow differs
            airflow["WORKER_AIRFLOW_VERSION"] = s.worker_airflow_version
        for key, value in airflow.items():
            name = "Airflow" + "".join(part.title() for part in key.split("_"))
            CfnOutput(
                self,
                name,
                description=f"Paste into the scheduler's environment ({key.lower()})",
                value=f"{AIRFLOW_ENV_PREFIX}{key}={value}",
            )


def add_stack(scope: Construct, settings: Settings, *, nag: bool = True) -> EcsEventExecutorStack:
    """Add the stack to an app; with ``nag``, run cdk-nag's AwsSolutions checks on the app at synth."""
    stack = EcsEventExecutorStack(scope, STACK_ID, settings=settings)
    if nag:
        Validations.of(scope).add_plugins(AwsSolutionsChecks(scope))
    return stack
