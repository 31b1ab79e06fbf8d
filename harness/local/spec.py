"""What the local mode creates: the stack's own CloudFormation template, so local and deployed cannot drift.

``local_resources_spec()`` synthesizes ``infra/`` in-process (``infra.template.synthesize_template``) and caches
the result under ``.local/`` keyed on a hash of the infra sources, because a jsii synth takes ~20 s. With
``--contract-only`` it uses a template-shaped spec built from the contract modules instead, with the same logical
resources the local mode needs; the log says which one was used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ecs_event_executor.control import bus
from ecs_event_executor.control import environment as env_vars
from ecs_event_executor.control.ecs_state import STARTED_BY, status_event_filter
from ecs_event_executor.control.tasks.schema import table_definition

from harness import REPO_ROOT

log = logging.getLogger(__name__)

LOCAL_DIR = REPO_ROOT / ".local"
# What the synthesized template depends on: a change to any of these re-synthesizes.
_TEMPLATE_INPUTS = ("infra", "cdk.json", "app.py")


def _sources_hash() -> str:
    digest = hashlib.sha256()
    for name in _TEMPLATE_INPUTS:
        path = REPO_ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or not file.is_file():
                continue
            digest.update(str(file.relative_to(REPO_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def local_resources_spec(*, use_template: bool = True) -> tuple[dict[str, Any], str]:
    """Return (a CloudFormation template of the stack, where it came from)."""
    if use_template:
        cache = LOCAL_DIR / f"template-{_sources_hash()}.json"
        if cache.is_file():
            return json.loads(cache.read_text()), f"synthesized stack template (cached {cache.name})"
        from infra.template import synthesize_template

        log.info("synthesizing the stack template (about 20 s; cached afterwards)")
        template = synthesize_template()
        LOCAL_DIR.mkdir(parents=True, exist_ok=True)
        for old in LOCAL_DIR.glob("template-*.json"):
            old.unlink(missing_ok=True)
        cache.write_text(json.dumps(template))
        return template, "synthesized stack template"
    return contract_template(), "contract modules (--contract-only)"


def contract_template() -> dict[str, Any]:
    """Return a template-shaped spec built from the contract, for when the stack cannot be synthesized."""
    table = table_definition("unused")
    launcher_env = {
        env_vars.TASKS_TABLE_NAME: {"Ref": "TasksTable"},
        env_vars.CLUSTER: {"Fn::GetAtt": ["Cluster", "Arn"]},
        env_vars.TASK_DEFINITION: {"Ref": "TaskDefinition"},
        env_vars.CONTAINER_NAME: "base",
        env_vars.LAUNCH_TYPE: "FARGATE",
        env_vars.SUBNETS: {"Ref": "Subnet"},
        env_vars.SECURITY_GROUPS: {"Fn::GetAtt": ["SecurityGroup", "GroupId"]},
        env_vars.ASSIGN_PUBLIC_IP: "true",
        env_vars.RUN_TASK_KWARGS: "{}",
        env_vars.EVENT_BUS_NAME: {"Ref": "ControlBus"},
        env_vars.LAUNCH_QUEUE_URL: {"Ref": "LauncherQueue"},
        env_vars.DEAD_LETTER_QUEUE_URL: {"Ref": "LauncherDeadLetterQueue"},
    }
    status_env = {
        env_vars.TASKS_TABLE_NAME: {"Ref": "TasksTable"},
        env_vars.CONTAINER_NAME: "base",
        env_vars.CLUSTER: {"Fn::GetAtt": ["Cluster", "Arn"]},
        env_vars.EVENT_BUS_NAME: {"Ref": "ControlBus"},
    }

    def airflow(key: str, value: Any) -> dict[str, Any]:
        return {"Value": {"Fn::Join": ["", [f"AIRFLOW__ECS_EVENT_EXECUTOR__{key}=", value]]}}

    return {
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
            "Subnet": {"Type": "AWS::EC2::Subnet", "Properties": {"CidrBlock": "10.0.1.0/24"}},
            "SecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {}},
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": "airflow-ecs"}},
            "TaskLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
            "TaskDefinition": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    "Cpu": "1024",
                    "Memory": "2048",
                    "ContainerDefinitions": [
                        {
                            "Name": "base",
                            "Image": "apache/airflow:3.3.2",
                            "Essential": True,
                            "LogConfiguration": {
                                "LogDriver": "awslogs",
                                "Options": {
                                    "awslogs-group": {"Ref": "TaskLogs"},
                                    "awslogs-stream-prefix": "airflow",
                                },
                            },
                        }
                    ],
                },
            },
            "TasksTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {k: v for k, v in table.items() if k != "TableName"}
                | {"TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True}},
            },
            "ControlBus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "airflow-ecs-events"}},
            "LauncherDeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "LauncherQueue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "VisibilityTimeout": 361,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["LauncherDeadLetterQueue", "Arn"]},
                        "maxReceiveCount": 50,
                    },
                },
            },
            "RelaunchRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventBusName": {"Ref": "ControlBus"},
                    "EventPattern": {"source": [bus.SOURCE], "detail-type": [bus.RELAUNCH_REQUESTED]},
                    "Targets": [
                        {
                            "Id": "Target0",
                            "Arn": {"Fn::GetAtt": ["LauncherQueue", "Arn"]},
                            "InputPath": "$.detail",
                        }
                    ],
                },
            },
            "StatusFailedEventsQueue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "EcsTaskStateRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventPattern": {
                        "source": ["aws.ecs"],
                        "detail-type": ["ECS Task State Change"],
                        "detail": {
                            "clusterArn": [{"Fn::GetAtt": ["Cluster", "Arn"]}],
                            "startedBy": [STARTED_BY],
                            **status_event_filter(),
                        },
                    },
                    "Targets": [{"Id": "Target0", "Arn": {"Fn::GetAtt": ["StatusHandlerFunction", "Arn"]}}],
                },
            },
            "StatusEventInvokeConfig": {
                "Type": "AWS::Lambda::EventInvokeConfig",
                "Properties": {
                    "FunctionName": {"Ref": "StatusHandlerFunction"},
                    "Qualifier": "$LATEST",
                    "MaximumRetryAttempts": 2,
                    "DestinationConfig": {
                        "OnFailure": {"Destination": {"Fn::GetAtt": ["StatusFailedEventsQueue", "Arn"]}}
                    },
                },
            },
            "LauncherHandlerFunction": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Handler": "lambdas.launcher.handler.handler",
                    "Environment": {"Variables": launcher_env},
                },
            },
            "StatusHandlerFunction": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Handler": "lambdas.status.handler.handler",
                    "Environment": {"Variables": status_env},
                },
            },
            "LauncherEventSource": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    "BatchSize": 10,
                    "EventSourceArn": {"Fn::GetAtt": ["LauncherQueue", "Arn"]},
                    "FunctionName": {"Ref": "LauncherHandlerFunction"},
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                },
            },
        },
        "Outputs": {
            "AirflowQueueUrl": airflow("QUEUE_URL", {"Ref": "LauncherQueue"}),
            "AirflowTableName": airflow("TABLE_NAME", {"Ref": "TasksTable"}),
            "AirflowRegionName": airflow("REGION_NAME", {"Ref": "AWS::Region"}),
            "AirflowLogGroup": airflow("LOG_GROUP", {"Ref": "TaskLogs"}),
            "AirflowLogStreamPrefix": {"Value": "AIRFLOW__ECS_EVENT_EXECUTOR__LOG_STREAM_PREFIX=airflow"},
            "AirflowContainerName": {"Value": "AIRFLOW__ECS_EVENT_EXECUTOR__CONTAINER_NAME=base"},
        },
    }
