"""The Lambdas' trimmed botocore data (issue 19, P5): botocore's own models without their documentation, the
same requests on the wire, read only by the botocore version that wrote it, and used by the Lambdas' clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.loaders import Loader
from ecs_event_executor.control import aws_clients, botocore_data

from infra import bundling
from tests.conftest import ControlPlane
from tests.control.test_aws_clients import clients_of_each_function

REGION = "eu-west-1"
# One call of each kind the Lambdas make, with the nested shapes their requests use.
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "ecs",
        "run_task",
        {
            "cluster": "airflow",
            "taskDefinition": "airflow-worker:3",
            "count": 1,
            "launchType": "FARGATE",
            "platformVersion": "LATEST",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-1"],
                    "securityGroups": ["sg-1"],
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": "base",
                        "command": ["airflow", "tasks", "run", "dag", "task", "run-1"],
                        "environment": [{"name": "ECS_EVENT_EXECUTOR_ATTEMPT", "value": "1"}],
                        "cpu": 512,
                        "memory": 1024,
                    }
                ],
                "ephemeralStorage": {"sizeInGiB": 30},
            },
            "startedBy": "airflow-ecs-event",
            "clientToken": "token-1",
            "tags": [{"key": "team", "value": "data"}],
            "propagateTags": "TASK_DEFINITION",
        },
    ),
    ("ecs", "describe_tasks", {"cluster": "airflow", "tasks": ["arn:aws:ecs:eu-west-1:1:task/airflow/abc"]}),
    (
        "ecs",
        "list_tasks",
        {"cluster": "airflow", "startedBy": "airflow-ecs-event", "desiredStatus": "STOPPED"},
    ),
    (
        "dynamodb",
        "put_item",
        {
            "TableName": "airflow-tasks",
            "Item": {"pk": {"S": "task#1"}, "attempt": {"N": "2"}, "tags": {"SS": ["a", "b"]}},
            "ConditionExpression": "attribute_not_exists(pk)",
        },
    ),
    (
        "dynamodb",
        "update_item",
        {
            "TableName": "airflow-tasks",
            "Key": {"pk": {"S": "task#1"}},
            "UpdateExpression": "SET #s = :s",
            "ConditionExpression": "#v < :v",
            "ExpressionAttributeNames": {"#s": "state", "#v": "version"},
            "ExpressionAttributeValues": {":s": {"S": "running"}, ":v": {"N": "3"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    ),
    (
        "sqs",
        "send_message",
        {
            "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/airflow-launch-dlq",
            "MessageBody": "{}",
            "DelaySeconds": 5,
            "MessageAttributes": {"FailureReason": {"DataType": "String", "StringValue": "malformed"}},
        },
    ),
    (
        "events",
        "put_events",
        {"Entries": [{"Source": "airflow", "DetailType": "relaunch", "Detail": "{}", "EventBusName": "bus"}]},
    ),
]
# Differ between any two requests: the signature's time and the SDK's per-call id.
VOLATILE_HEADERS = {"authorization", "x-amz-date", "amz-sdk-invocation-id"}


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return botocore_data.write(tmp_path_factory.mktemp("layer") / botocore_data.BUNDLED_DIR.name)


class _Body:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b"{}"


def _requests(loader: Loader | None) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Return each of CALLS' requests as sent (method, URL, body, stable headers), answered with ``{}``."""
    session = botocore.session.get_session()
    session.set_credentials("AKIDEXAMPLE", "secret", "token")
    if loader is not None:
        session.register_component("data_loader", loader)
    sent = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        headers = {k.lower(): str(v) for k, v in request.headers.items() if k.lower() not in VOLATILE_HEADERS}
        sent.append((request.method, request.url, bytes(request.body or b""), headers))
        return AWSResponse(request.url, 200, {}, _Body())

    for service, operation, params in CALLS:
        client = session.create_client(service, region_name=REGION, config=aws_clients.client_config(service))
        client.meta.events.register("before-send", capture)
        getattr(client, operation)(**params)
    return sent


def test_the_trimmed_models_are_botocores_own_without_documentation(trimmed: Path) -> None:
    full, ours = Loader(), botocore_data.loader(trimmed)
    assert ours is not None
    for service in botocore_data.SERVICES:
        version = full.determine_latest_version(service, "service-2")
        for name in botocore_data.SERVICE_FILES:
            if service not in full.list_available_services(name):
                continue
            expected = botocore_data.without_documentation(full.load_service_model(service, name, version))
            assert ours.load_service_model(service, name, version) == expected, (service, name)
    expected_services = {s for p in full.load_data("endpoints")["partitions"] for s in p["services"]}
    kept = {s for p in ours.load_data("endpoints")["partitions"] for s in p["services"]}
    assert kept == expected_services & set(botocore_data.SERVICES)


def test_requests_built_from_the_trimmed_models_are_the_same_on_the_wire(trimmed: Path) -> None:
    with_full, with_trimmed = _requests(None), _requests(botocore_data.loader(trimmed))
    assert len(with_trimmed) == len(CALLS)
    assert with_trimmed == with_full


def test_data_written_by_another_botocore_version_is_not_read(trimmed: Path, tmp_path: Path) -> None:
    other = botocore_data.write(tmp_path / "other")
    (other / botocore_data.STAMP).write_text("0.0.1")
    assert botocore_data.loader(other) is None
    assert botocore_data.loader(tmp_path / "absent") is None
    assert botocore_data.loader(trimmed) is not None


def test_the_lambdas_clients_read_only_the_bundled_data(
    trimmed: Path, monkeypatch: pytest.MonkeyPatch, control_plane: ControlPlane
) -> None:
    monkeypatch.setattr(botocore_data, "BUNDLED_DIR", trimmed)
    monkeypatch.setattr(aws_clients, "_session", None)
    client = aws_clients.lambda_client("dynamodb")
    loader = aws_clients._session.get_component("data_loader")  # type: ignore[union-attr]
    assert loader.search_paths == [str(trimmed)]
    assert control_plane.table in client.list_tables()["TableNames"]


def test_every_service_a_lambda_calls_is_in_the_trimmed_data(control_plane: ControlPlane) -> None:
    used = {service for _, clients in clients_of_each_function().values() for service in clients}
    assert used <= set(botocore_data.SERVICES)


def test_the_layer_holds_the_trimmed_data_where_the_lambdas_look(tmp_path: Path) -> None:
    python_dir = tmp_path / "python"
    (python_dir / "ecs_event_executor" / "control").mkdir(parents=True)
    written = bundling.write_botocore_data(python_dir)
    assert written.relative_to(python_dir) == botocore_data.BUNDLED_DIR.relative_to(
        botocore_data.BUNDLED_DIR.parents[2]
    )
    assert botocore_data.loader(written) is not None
    assert "botocore" in bundling.RUNTIME_REQUIREMENTS
