"""Create the stack's resources in moto_server from its CloudFormation template.

Only the resource types the control plane's data path uses are created (network, cluster, task definition, log
groups, queues, table, buses, rules); IAM, alarms and dashboards have no local meaning. Lambda functions are not
created: their Handler and Environment are resolved, and the control-plane process runs them in-process, fed by
its pollers as each SQS event source mapping names them (the launch queue). A rule with a Lambda target (the ECS
rule -> the status function) gets a capture queue that moto delivers the matched events to; the control plane
invokes the function with each, asynchronously as Lambda does: its retries, then its on-failure destination (the
function's EventInvokeConfig). A scheduled rule's Lambda target (the reconciler) is invoked on its rate.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from ecs_event_executor.control import environment as env_vars

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT = "123456789012"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "airflow-ecs-local",
    "AWS::NoValue": None,
}
# What local task processes may use: awslogs needs a memory value per container; moto insists on one.
DEFAULT_CONTAINER_MEMORY = 512


class Unresolvable(KeyError):
    """A template value refers to a resource the local mode does not create."""


@dataclass
class FunctionSpec:
    """A Lambda function as the control plane runs it: the handler's import path and its environment."""

    logical_id: str
    handler: str
    env: dict[str, str]


@dataclass
class QueueFeed:
    """A queue the control plane polls and hands to a function, as an SQS event source mapping does."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    partial_batch: bool


@dataclass
class Bridge:
    """An EventBridge → SQS target with InputPath: moto delivers the whole event, the bridge applies the path."""

    queue_url: str
    target_queue_url: str
    input_path: str


@dataclass
class AsyncInvoke:
    """A rule's Lambda target: events captured on a queue, invoked one at a time with Lambda's async retries."""

    function: str
    queue_url: str  # where moto delivers the rule's matched events
    retry_attempts: int  # the function's EventInvokeConfig (Lambda's default: 2)
    on_failure_queue_url: str  # its on-failure destination ("" if none: a failed event would be dropped)


@dataclass
class Schedule:
    """A scheduled rule with a Lambda target (the reconciler): the control plane invokes the function itself."""

    function: str
    expression: str  # "rate(5 minutes)" as in the template

    def period_seconds(self) -> float:
        """Return the rate in seconds (cron expressions are not used by the stack)."""
        amount, unit = self.expression.removeprefix("rate(").removesuffix(")").split()
        return (
            float(amount)
            * {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}[unit]
        )


@dataclass
class LocalResources:
    """Everything created, in plain values (written to a JSON file for the control-plane process)."""

    endpoint: str
    region: str
    template_origin: str
    cluster_arn: str
    task_definition_arn: str
    container_name: str
    log_group: str
    log_stream_prefix: str
    launch_queue_url: str
    dead_letter_queue_url: str
    table_name: str
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    feeds: list[QueueFeed] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    airflow_env: dict[str, str] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    invokes: list[AsyncInvoke] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LocalResources:
        raw = json.loads(text)
        raw["functions"] = {k: FunctionSpec(**v) for k, v in raw["functions"].items()}
        raw["feeds"] = [QueueFeed(**f) for f in raw["feeds"]]
        raw["bridges"] = [Bridge(**b) for b in raw["bridges"]]
        raw["schedules"] = [Schedule(**s) for s in raw.get("schedules", [])]
        raw["invokes"] = [AsyncInvoke(**i) for i in raw.get("invokes", [])]
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> LocalResources:
        return cls.from_json(path.read_text())


def session(endpoint: str) -> Any:
    """Return a factory of boto3 clients for moto_server (dummy credentials; nothing reaches AWS)."""
    sess = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)

    def client(service: str) -> Any:
        return sess.client(service, endpoint_url=endpoint)

    return client


class _Resolver:
    """Resolve Ref, Fn::GetAtt, Fn::Join, Fn::Sub and Fn::Select against what was created locally."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def set(self, logical_id: str, ref: Any, **attrs: Any) -> None:
        self.values[logical_id] = {"Ref": ref, **attrs}

    def get(self, logical_id: str, attr: str = "Ref") -> Any:
        if logical_id in PSEUDO and attr == "Ref":
            return PSEUDO[logical_id]
        try:
            return self.values[logical_id][attr]
        except KeyError:
            raise Unresolvable(f"{logical_id}.{attr}") from None

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), *_ = value.items()
            if fn == "Ref":
                return self.get(arg)
            if fn == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get(logical, attr)
            if fn == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self(p)) for p in self(parts))
            if fn == "Fn::Select":
                index, items = arg
                return self(items)[int(self(index))]
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

                def sub(match: re.Match[str]) -> str:
                    name = match.group(1)
                    if name in extra:
                        return str(extra[name])
                    logical, _, attr = name.partition(".")
                    return str(self.get(logical, attr or "Ref"))

                return re.sub(r"\$\{([^}]+)\}", sub, text)
        return {k: self(v) for k, v in value.items()}


def _of_type(template: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical, res.get("Properties", {}))
        for logical, res in template["Resources"].items()
        if res["Type"] == kind
    ]


def create_resources(endpoint: str, template: dict[str, Any], *, origin: str) -> LocalResources:
    """Create the template's data-path resources in moto_server at ``endpoint``."""
    client = session(endpoint)
    resolve = _Resolver()
    ec2, ecs, logs = client("ec2"), client("ecs"), client("logs")
    sqs, ddb, events = client("sqs"), client("dynamodb"), client("events")

    # Network: moto's awsvpc RunTask needs a VPC with DNS hostnames, subnets and security groups.
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    for logical, _ in _of_type(template, "AWS::EC2::VPC"):
        resolve.set(logical, vpc, VpcId=vpc)
    for i, (logical, _) in enumerate(_of_type(template, "AWS::EC2::Subnet")):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i + 1}.0/24")["Subnet"]["SubnetId"]
        resolve.set(logical, subnet, SubnetId=subnet)
    for i, (logical, _) in enumerate(_of_type(template, "AWS::EC2::SecurityGroup")):
        group = ec2.create_security_group(GroupName=f"tasks-{i}", Description="local tasks", VpcId=vpc)
        resolve.set(logical, group["GroupId"], GroupId=group["GroupId"])

    for logical, props in _of_type(template, "AWS::Logs::LogGroup"):
        name = props.get("LogGroupName") or f"/airflow-ecs-local/{logical}"
        logs.create_log_group(logGroupName=name)
        resolve.set(logical, name, Arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*")

    for logical, props in _of_type(template, "AWS::ECS::Cluster"):
        arn = ecs.create_cluster(clusterName=props.get("ClusterName") or logical)["cluster"]["clusterArn"]
        resolve.set(logical, arn.rsplit("/", 1)[-1], Arn=arn)

    task_defs = _of_type(template, "AWS::ECS::TaskDefinition")
    container_name, log_group, stream_prefix = "base", "", ""
    for logical, props in task_defs:
        containers = []
        for c in props["ContainerDefinitions"]:
            image = resolve(c.get("Image"))
            log_config = resolve(c.get("LogConfiguration")) if c.get("LogConfiguration") else None
            containers.append(
                {
                    "name": c["Name"],
                    "image": image if isinstance(image, str) else "local",
                    "memory": int(c.get("Memory") or props.get("Memory") or DEFAULT_CONTAINER_MEMORY),
                    "essential": c.get("Essential", True),
                    **({"logConfiguration": _lower_log_config(log_config)} if log_config else {}),
                }
            )
            if log_config and log_config.get("LogDriver") == "awslogs":
                container_name = c["Name"]
                log_group = log_config["Options"]["awslogs-group"]
                stream_prefix = log_config["Options"].get("awslogs-stream-prefix", "")
        arn = ecs.register_task_definition(
            family=props.get("Family") or logical,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu=str(props.get("Cpu", "256")),
            memory=str(props.get("Memory", "512")),
            containerDefinitions=containers,
        )["taskDefinition"]["taskDefinitionArn"]
        resolve.set(logical, arn)

    for logical, props in _of_type(template, "AWS::DynamoDB::Table"):
        name = props.get("TableName") or f"airflow-ecs-local-{logical}"
        args = {
            k: props[k]
            for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
            if k in props
        }
        arn = ddb.create_table(TableName=name, **args)["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        resolve.set(logical, name, Arn=arn)

    def create_queue(name: str, attributes: dict[str, str]) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    # Dead-letter queues first: a redrive policy names its DLQ's ARN.
    queues = sorted(_of_type(template, "AWS::SQS::Queue"), key=lambda q: "RedrivePolicy" in q[1])
    for logical, props in queues:
        attributes: dict[str, str] = {
            key: str(props[key])
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
            )
            if key in props
        }
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(resolve(props["RedrivePolicy"]))
        url, arn = create_queue(props.get("QueueName") or logical, attributes)
        resolve.set(logical, url, Arn=arn, QueueName=url.rsplit("/", 1)[-1], QueueUrl=url)

    for logical, props in _of_type(template, "AWS::Events::EventBus"):
        name = props.get("Name") or logical
        arn = events.create_event_bus(Name=name)["EventBusArn"]
        resolve.set(logical, name, Arn=arn, Name=name)

    functions = dict(_of_type(template, "AWS::Lambda::Function"))
    for logical in functions:
        resolve.set(logical, logical, Arn=f"lambda:{logical}")
    queue_by_arn = {v.get("Arn"): v["Ref"] for v in resolve.values.values() if "QueueUrl" in v}

    result_feeds: list[QueueFeed] = []
    bridges: list[Bridge] = []
    schedules: list[Schedule] = []
    invokes: list[AsyncInvoke] = []
    invoke_configs = {
        resolve(props["FunctionName"]): props
        for _, props in _of_type(template, "AWS::Lambda::EventInvokeConfig")
    }
    for logical, props in _of_type(template, "AWS::Events::Rule"):
        if "ScheduleExpression" in props:
            # moto does not fire scheduled rules: the control plane invokes their Lambda targets on the rate.
            for target in props.get("Targets", []):
                arn = resolve(target["Arn"])
                if isinstance(arn, str) and arn.startswith("lambda:"):
                    schedules.append(Schedule(arn.split(":", 1)[1], props["ScheduleExpression"]))
            continue
        bus_name = resolve(props.get("EventBusName", "default"))
        events.put_rule(
            Name=logical,
            EventBusName=bus_name,
            EventPattern=json.dumps(resolve(props["EventPattern"])),
            State=props.get("State", "ENABLED"),
        )
        for target in props.get("Targets", []):
            arn = resolve(target["Arn"])
            if arn in queue_by_arn and target.get("InputPath"):
                # moto ignores InputPath on SQS targets and delivers the whole event; AWS delivers only the
                # path. A bridge queue takes moto's delivery and the control plane applies the path.
                url, target_arn = create_queue(f"{logical}-inputpath"[:80], {"VisibilityTimeout": "30"})
                bridges.append(Bridge(url, queue_by_arn[arn], target["InputPath"]))
            elif arn in queue_by_arn:
                target_arn = arn
            elif isinstance(arn, str) and arn.startswith("lambda:"):
                # moto cannot invoke a function it does not run: it delivers to a capture queue instead, and the
                # control plane invokes the function as Lambda's asynchronous invoke does.
                function = arn.split(":", 1)[1]
                url, target_arn = create_queue(f"{logical}-invoke"[:80], {"VisibilityTimeout": "60"})
                config = invoke_configs.get(function, {})
                destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                invokes.append(
                    AsyncInvoke(
                        function=function,
                        queue_url=url,
                        retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
                        on_failure_queue_url=queue_by_arn.get(resolve(destination), "")
                        if destination
                        else "",
                    )
                )
            else:
                log.info("rule %s: target %s has no local meaning; skipped", logical, arn)
                continue
            events.put_targets(
                Rule=logical, EventBusName=bus_name, Targets=[{"Id": target["Id"], "Arn": target_arn}]
            )

    for _, props in _of_type(template, "AWS::Lambda::EventSourceMapping"):
        source = resolve(props["EventSourceArn"])
        if source not in queue_by_arn:
            continue
        result_feeds.append(
            QueueFeed(
                function=resolve(props["FunctionName"]),
                queue_url=queue_by_arn[source],
                queue_arn=source,
                batch_size=int(props.get("BatchSize", 10)),
                partial_batch="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            )
        )

    specs = {
        logical: FunctionSpec(
            logical,
            props["Handler"],
            {k: str(resolve(v)) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
        )
        for logical, props in functions.items()
    }
    airflow_env = {}
    for output in template.get("Outputs", {}).values():
        try:
            value = resolve(output["Value"])
        except Unresolvable:
            continue  # an output about something with no local meaning (an IAM policy, ...)
        if isinstance(value, str) and value.startswith("AIRFLOW__") and "=" in value:
            key, _, val = value.partition("=")
            airflow_env[key] = val
    # The launcher is the function that starts tasks from a task definition (the status Lambda reads a queue too).
    launcher = next(f for f in result_feeds if "TASK_DEFINITION" in specs[f.function].env)
    launcher_env = specs[launcher.function].env
    return LocalResources(
        endpoint=endpoint,
        region=REGION,
        template_origin=origin,
        cluster_arn=next(
            v["Arn"] for k, v in resolve.values.items() if k in dict(_of_type(template, "AWS::ECS::Cluster"))
        ),
        task_definition_arn=launcher_env[env_vars.TASK_DEFINITION],
        container_name=container_name,
        log_group=log_group,
        log_stream_prefix=stream_prefix,
        launch_queue_url=launcher.queue_url,
        dead_letter_queue_url=launcher_env.get(env_vars.DEAD_LETTER_QUEUE_URL, ""),
        table_name=launcher_env[env_vars.TASKS_TABLE_NAME],
        functions=specs,
        feeds=result_feeds,
        bridges=bridges,
        airflow_env=airflow_env,
        schedules=schedules,
        invokes=invokes,
    )


def _lower_log_config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "logDriver": config["LogDriver"],
        "options": {k: str(v) for k, v in config.get("Options", {}).items()},
    }
