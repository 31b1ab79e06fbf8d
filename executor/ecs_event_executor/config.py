"""The executor's settings: the ``[ecs_event_executor]`` section, read once at start and validated.

Values come from Airflow's configuration through the executor's ``ExecutorConf``, so per-team values work the
way Airflow resolves them (``AIRFLOW__<TEAM>___ECS_EVENT_EXECUTOR__<KEY>``), and are parsed by one pydantic model
(``ExecutorSettings``, a field per key). A missing or invalid value raises ``ExecutorSettingsError`` naming the
key and the environment variable that sets it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from ecs_event_executor.control.executor_config import account_ecr_pattern
from ecs_event_executor.control.launch_profiles import UNKNOWN_QUEUE_POLICIES

SECTION = "ecs_event_executor"

# Defaults follow AwsEcsExecutor where the setting exists there (conn_id, max_run_task_attempts, health check).
DEFAULTS: dict[str, str] = {
    "conn_id": "aws_default",
    "check_health_on_startup": "True",
    "max_run_task_attempts": "3",
    "container_name": "base",
    "log_stream_prefix": "airflow",
    "sync_overlap_seconds": "15",
    "end_wait_timeout_seconds": "300",
    "reconcile_interval_seconds": "300",
    "send_retries": "3",
    "heartbeat_max_age_seconds": "1800",
    "launch_start_margin_seconds": "180",
    "unknown_queue": "default",
}


class ConfSource(Protocol):
    """What the settings need from Airflow's ExecutorConf (or any stand-in with the same methods)."""

    def get(self, *args: Any, **kwargs: Any) -> str | None: ...


class ExecutorSettingsError(ValueError):
    """A setting of ``[ecs_event_executor]`` is missing or invalid; the message names it and its variable."""


def env_var_name(key: str, team_name: str | None = None, section: str = SECTION) -> str:
    """Return the environment variable that sets ``[section] key`` (for ``team_name`` if given)."""
    team = f"{team_name.upper()}___" if team_name else ""
    return f"AIRFLOW__{team}{section.upper()}__{key.upper()}"


# The launch message caps attempts (LaunchRequest.max_attempts); say so here rather than at the first task.
_MAX_ATTEMPTS_LIMIT = 20


def _required(value: str | None) -> str:
    if value is None:
        raise ValueError("is required and not set")
    return value


def _queue_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"must be an SQS queue URL (https://sqs.<region>.amazonaws.com/...), got {value!r}")
    return value


def _conn_id(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def _boolean(value: str | None) -> bool:
    lowered = (value or "").lower()
    if lowered in ("true", "t", "1", "yes", "on"):
        return True
    if lowered in ("false", "f", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {lowered!r}")


def _number(*, minimum: float, integer: bool = False, maximum: int | None = None) -> BeforeValidator:
    def parse(value: str | None) -> float:
        try:
            parsed: float = int(value or "") if integer else float(value or "")
        except ValueError:
            raise ValueError(f"must be {'an integer' if integer else 'a number'}, got {value!r}") from None
        if parsed < minimum:
            raise ValueError(f"must be at least {minimum:g}, got {value}")
        if maximum is not None and parsed > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return parsed

    return BeforeValidator(parse)


_RequiredText = Annotated[str, BeforeValidator(_required)]


def _names(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _unknown_queue(value: str) -> str:
    if value.lower() not in UNKNOWN_QUEUE_POLICIES:
        raise ValueError(f"must be default or refuse, got {value!r}")
    return value.lower()


# The account and region of an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>).
_QUEUE_ACCOUNT = re.compile(r"/(\d{12})/[^/]+$")
_QUEUE_REGION = re.compile(r"^https?://sqs\.([a-z0-9-]+)\.amazonaws\.com")

# The executor's safety net re-reads its tracked items at least this often apart, and always runs.
MIN_RECONCILE_INTERVAL_SECONDS = 30.0


def _reconcile_interval(value: float) -> float:
    if value == 0:
        return float(DEFAULTS["reconcile_interval_seconds"])
    if value < MIN_RECONCILE_INTERVAL_SECONDS:
        raise ValueError(
            f"must be at least {MIN_RECONCILE_INTERVAL_SECONDS:g} (0 means the default, "
            f"{DEFAULTS['reconcile_interval_seconds']}; the safety net cannot be turned off), got {value:g}"
        )
    return value


class ExecutorSettings(BaseModel):
    """Validated settings of one executor instance; each field is the ``[ecs_event_executor]`` key of its name."""

    model_config = ConfigDict(frozen=True)

    queue_url: Annotated[str, BeforeValidator(_required), AfterValidator(_queue_url)]
    table_name: _RequiredText
    conn_id: Annotated[str | None, BeforeValidator(_conn_id)] = "aws_default"
    region_name: str | None = None
    check_health_on_startup: Annotated[bool, BeforeValidator(_boolean)] = True
    owner: str | None = None  # None: derived at start from the team and the scheduler job id
    max_run_task_attempts: Annotated[int, _number(minimum=1, integer=True, maximum=_MAX_ATTEMPTS_LIMIT)] = 3
    container_name: _RequiredText = "base"
    log_group: str | None = None
    log_stream_prefix: Annotated[str, BeforeValidator(lambda value: value or "")] = "airflow"
    sync_overlap_seconds: Annotated[float, _number(minimum=0)] = 15.0
    end_wait_timeout_seconds: Annotated[float, _number(minimum=0)] = 300.0
    # A full read of the tracked items (BatchGetItem, 100 per call) now and then: a safety net for a change the
    # feed could miss. It cannot be turned off: 0 means the default, and it is at least
    # MIN_RECONCILE_INTERVAL_SECONDS.
    reconcile_interval_seconds: Annotated[float, _number(minimum=0), AfterValidator(_reconcile_interval)] = (
        300.0
    )
    send_retries: Annotated[int, _number(minimum=0, integer=True)] = 3
    # A launch is not started later than this before its workload's token expires: Fargate takes 30-120 s to
    # start a task, and the task's first Execution API call needs a valid token.
    launch_start_margin_seconds: Annotated[float, _number(minimum=0)] = 180.0
    # From [scheduler] task_queued_timeout, read by load_settings.
    task_queued_timeout_seconds: float = 600.0
    # check_health fails when the control plane's heartbeat (written by the reconciler every few minutes) is
    # older than this: events may not be reconciled. 0 turns the check off.
    heartbeat_max_age_seconds: Annotated[float, _number(minimum=0)] = 1800.0
    # Images a task's executor_config may name (comma-separated patterns, '*' matches anything); unset: the
    # ECR repositories of the queue's account in its region.
    allowed_images: Annotated[tuple[str, ...] | None, BeforeValidator(_names)] = None
    # The stack's launch profile names (stack output); unset: the queue is not checked here, only by the launcher.
    launch_profiles: Annotated[tuple[str, ...] | None, BeforeValidator(_names)] = None
    # A task whose queue names no launch profile: "default" (runs with the default profile) or "refuse".
    unknown_queue: Annotated[str, AfterValidator(_unknown_queue)] = "default"

    @property
    def image_patterns(self) -> tuple[str, ...]:
        """Return the allowed image patterns: the setting, or the queue account's ECR repositories."""
        if self.allowed_images is not None:
            return self.allowed_images
        account = _QUEUE_ACCOUNT.search(self.queue_url)
        region = _QUEUE_REGION.match(self.queue_url)
        region_name = region.group(1) if region else self.region_name
        if account is None or region_name is None:
            return ()
        return (account_ecr_pattern(account.group(1), region_name),)

    @property
    def is_fifo_queue(self) -> bool:
        return self.queue_url.endswith(".fifo")


# The keys of [ecs_event_executor], in the order a problem is reported.
_KEYS = tuple(name for name in ExecutorSettings.model_fields if name != "task_queued_timeout_seconds")


def load_settings(conf: ConfSource, team_name: str | None = None) -> ExecutorSettings:
    """Read and validate ``[ecs_event_executor]``; raise ExecutorSettingsError naming a bad key."""

    def raw(key: str) -> str | None:
        value = conf.get(SECTION, key, fallback=DEFAULTS.get(key))
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    try:
        queued_timeout = float(conf.get("scheduler", "task_queued_timeout", fallback="600") or 600)
    except ValueError:
        raise ExecutorSettingsError(
            f"[scheduler] task_queued_timeout must be a number ({env_var_name('task_queued_timeout', team_name, 'scheduler')})"
        ) from None
    try:
        return ExecutorSettings.model_validate(
            {key: raw(key) for key in _KEYS} | {"task_queued_timeout_seconds": queued_timeout}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0])
        cause = (error.get("ctx") or {}).get("error")
        problem = str(cause) if cause is not None else error["msg"]
        raise ExecutorSettingsError(
            f"[{SECTION}] {key} {problem} (set it in airflow.cfg or with {env_var_name(key, team_name)})"
        ) from None
