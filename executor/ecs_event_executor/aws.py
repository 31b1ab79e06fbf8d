"""AWS clients for the executor: created lazily from the Airflow AWS connection, rebuilt after credential errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import boto3

log = logging.getLogger(__name__)

# Builds one boto3 client for a service name ("sqs", "dynamodb", "logs"). Tests inject their own.
ClientFactory = Callable[[str], Any]


def connection_client_factory(conn_id: str | None, region_name: str | None) -> ClientFactory:
    """Return a factory that builds clients from the Airflow AWS connection ``conn_id``.

    With the Amazon provider installed its hook resolves the connection (role assumption, profiles, ...);
    without it, or with no connection id, boto3's default credential chain is used.
    """

    def build(service: str) -> Any:
        try:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
        except ImportError:
            session: Any = boto3.Session(region_name=region_name)
            return session.client(service)
        hook: Any = AwsGenericHook(aws_conn_id=conn_id, region_name=region_name, client_type=service)
        return hook.get_client_type(region_name=region_name)

    return build


class AwsClients:
    """One client per service, built on first use; ``reset()`` drops them so the next use builds fresh ones."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._clients: dict[str, Any] = {}
        self.generation = 0  # bumped by reset(): holders of derived objects rebuild them

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]

    def reset(self) -> None:
        """Forget every client (new credentials are resolved when they are next built)."""
        self._clients.clear()
        self.generation += 1
