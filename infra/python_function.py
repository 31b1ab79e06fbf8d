"""A Python Lambda function as this project deploys it: own role, own log group, tracing, the runtime layer."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from ecs_event_executor.control import environment as env_vars

from infra import bundling, nag
from infra.settings import LOG_RETENTION_DAYS

METRICS_NAMESPACE = env_vars.DEFAULT_METRICS_NAMESPACE
# Lambda's advanced logging controls: JSON lines (Powertools Logger's own), the application's level, and the
# platform's START/END/REPORT lines filtered out by Lambda before ingestion (WARN keeps its timeouts and
# out-of-memory lines). Ingestion was billed per invocation for those lines alone (docs/bench.md).
APPLICATION_LOG_LEVEL = "INFO"
SYSTEM_LOG_LEVEL = lambda_.SystemLogLevel.WARN


def log_retention(days: int) -> logs.RetentionDays:
    """Return the RetentionDays member for ``days`` (one of the values CloudWatch Logs accepts)."""
    members = [m for m in logs.RetentionDays if m is not logs.RetentionDays.INFINITE]
    by_days = dict(zip(LOG_RETENTION_DAYS, members, strict=True))
    return by_days[days]


class PythonFunction(Construct):
    """One handler from ``lambdas/<handler>/`` with the shared runtime layer.

    The role is created here with no managed policy: the function may write its own log group (and X-Ray) and
    nothing else until the stack grants more.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        handler: str,
        function_name: str,
        description: str,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
        timeout: Duration,
        log_retention: logs.RetentionDays,
        memory_size: int = 512,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: its own logs and traces; the stack grants the rest",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=bundling.RUNTIME,
            architecture=bundling.ARCHITECTURE,
            code=bundling.handler_code(handler),
            handler=bundling.handler_path(handler),
            layers=[layer],
            role=self.role,
            log_group=self.log_group,
            timeout=timeout,
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            system_log_level_v2=SYSTEM_LOG_LEVEL,
            application_log_level_v2=lambda_.ApplicationLogLevel[APPLICATION_LOG_LEVEL],
            reserved_concurrent_executions=reserved_concurrency,
            environment={
                env_vars.POWERTOOLS_SERVICE_NAME: function_name,
                env_vars.POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
                env_vars.POWERTOOLS_LOG_LEVEL: APPLICATION_LOG_LEVEL,
                **environment,
            },
        )
        nag.acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12 on purpose: the layer's binary wheels (pydantic-core) are installed for cp312 "
            "(infra/bundling.py changes RUNTIME and PYTHON_VERSION together); python3.12 is a supported runtime.",
        )
        nag.acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions; "
            "this is the only statement with Resource * on the role (added by tracing=ACTIVE).",
        )
