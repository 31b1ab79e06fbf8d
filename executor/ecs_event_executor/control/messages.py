"""The launch-queue message contract: what the executor (and the control plane itself) puts on the launch queue.

Every message body is one JSON object with ``schema`` (the contract version) and ``kind``. The launcher accepts
exactly these kinds; anything else is a poison message and goes to the dead-letter queue with the reason.

- ``launch``   start an Airflow task instance try as an ECS task (sent by the executor).
- ``relaunch`` start an attempt of an existing launch (the status handler after an infrastructure failure,
  the reconciler for a launch whose message was lost; both through the bus).
- ``cancel``   revoke or terminate: do not launch, or stop the ECS task if it already runs (sent by the executor).
- ``adopt``    move a task to another owner, so the adopting scheduler's change feed sees it (sent by the executor).
- ``ping``     a health check from the executor; acknowledged and dropped.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1

# ECS caps RunTask clientToken at 64 characters; launch ids are built to leave room for the attempt suffix.
CLIENT_TOKEN_MAX_CHARS = 64


class TaskKey(BaseModel):
    """The Airflow task instance key a launch belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    dag_id: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    map_index: int = -1
    try_number: int = Field(ge=0)

    def digest(self) -> str:
        """Return a stable hex digest of the key, used to build launch ids."""
        raw = json.dumps([self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number])
        return hashlib.sha256(raw.encode()).hexdigest()


class _Message(BaseModel):
    # Unknown fields are refused: a message we do not fully understand must not start a container.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    schema_version: Literal[1] = Field(default=1, alias="schema")
    launch_id: str = Field(min_length=8, max_length=56, pattern=r"^[A-Za-z0-9-]+$")

    def to_json(self) -> str:
        """Serialize for the queue (aliases on, so the version travels as ``schema``)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class LaunchRequest(_Message):
    """Start one Airflow task instance try as an ECS task."""

    kind: Literal["launch"] = "launch"
    owner: str = Field(min_length=1, max_length=200)
    team: str | None = None
    key: TaskKey
    # The container command: for Airflow 3 the ``execute_workload`` invocation carrying the workload JSON; for
    # Airflow 2.11 ``airflow tasks run <dag> <task> <run> --local ...`` (control/workload_guard.py checks both).
    command: list[str] = Field(min_length=1)
    # RunTask overrides from the task's ``executor_config`` (validated by executor_config.validate_executor_config).
    executor_config: dict[str, Any] = Field(default_factory=dict)
    queued_at: datetime
    # After this instant the workload can no longer start (its token expires), so it is not launched.
    launch_deadline: datetime | None = None
    # How many ECS tasks may be started for infrastructure failures (AwsEcsExecutor's max_run_task_attempts).
    max_attempts: int = Field(default=3, ge=1, le=20)
    # The task instance's Airflow queue: it picks the launch profile (control/launch_profiles.py).
    queue: str | None = Field(default=None, max_length=256)


class RelaunchRequest(_Message):
    """Start the given attempt of an existing launch: the next one after an infrastructure failure (from the
    status handler), or the current one again when its message was lost (from the reconciler)."""

    kind: Literal["relaunch"] = "relaunch"
    attempt: int = Field(ge=1)


class CancelRequest(_Message):
    """Do not launch this task, or stop its ECS task if it was launched."""

    kind: Literal["cancel"] = "cancel"
    owner: str = Field(min_length=1, max_length=200)
    # The sender's team (Airflow multi-team): a cancel applies only to a launch of the same team.
    team: str | None = None
    reason: str = Field(default="revoked by the Airflow executor", max_length=1000)


class AdoptRequest(_Message):
    """Move a task to a new owner (an adopting scheduler)."""

    kind: Literal["adopt"] = "adopt"
    owner: str = Field(min_length=1, max_length=200)
    # The sender's team: a scheduler adopts only its own team's launches.
    team: str | None = None


class PingRequest(BaseModel):
    """A health check: proves the sender may write to the queue; the launcher acknowledges it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    schema_version: Literal[1] = Field(default=1, alias="schema")
    kind: Literal["ping"] = "ping"
    owner: str = Field(min_length=1, max_length=200)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


AnyMessage = LaunchRequest | RelaunchRequest | CancelRequest | AdoptRequest | PingRequest
ControlMessage = Annotated[AnyMessage, Field(discriminator="kind")]
_CONTROL_MESSAGE: TypeAdapter[AnyMessage] = TypeAdapter(ControlMessage, config=ConfigDict(defer_build=True))


class MalformedMessage(ValueError):
    """A queue message that does not follow this contract; the text says why."""


def parse_message(body: str) -> AnyMessage:
    """Parse one queue message body, raising MalformedMessage with a readable reason."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("body is not a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise MalformedMessage(
            f"unsupported schema {data.get('schema')!r}; this control plane reads {SCHEMA_VERSION}"
        )
    try:
        return _CONTROL_MESSAGE.validate_python(data)
    except ValidationError as exc:
        raise MalformedMessage(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError, *, limit: int = 5) -> str:
    """Return the first ``limit`` problems of a pydantic error as ``field.path: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}" for err in exc.errors()[:limit]
    )


def new_launch_id(key: TaskKey) -> str:
    """Return a fresh launch id for one queueing of ``key``.

    Airflow re-queues a task revoked for sitting in queued with the *same* key and try number, so a launch id adds
    a random part to the key digest: each queueing is its own item, and a revoked one stays revoked.
    """
    return f"{key.digest()[:24]}-{key.try_number}-{secrets.token_hex(4)}"


def client_token(launch_id: str, attempt: int) -> str:
    """Return the RunTask clientToken for one attempt: the same message always yields the same token."""
    token = f"{launch_id}-a{attempt}"
    if len(token) > CLIENT_TOKEN_MAX_CHARS:
        token = hashlib.sha256(token.encode()).hexdigest()[:CLIENT_TOKEN_MAX_CHARS]
    return token


def utcnow() -> datetime:
    """Return the current time, timezone-aware."""
    return datetime.now(UTC)
