"""The executor's settings: the ``[ecs_event_executor]`` section, read once at start and validated.

Values come from Airflow's configuration through the executor's ``ExecutorConf``, so per-team values work the
way Airflow resolves them (``AIRFLOW__<TEAM>___ECS_EVENT_EXECUTOR__<KEY>``). A missing or invalid value raises
``ExecutorSettingsError`` naming the key and the environment variable that sets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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


@dataclass(frozen=True)
class ExecutorSettings:
    """Validated settings of one executor instance."""

    queue_url: str
    table_name: str
    conn_id: str | None = "aws_default"
    region_name: str | None = None
    check_health_on_startup: bool = True
    owner: str | None = None  # None: derived at start from the team and the scheduler job id
    max_run_task_attempts: int = 3
    container_name: str = "base"
    log_group: str | None = None
    log_stream_prefix: str = "airflow"
    sync_overlap_seconds: float = 15.0
    end_wait_timeout_seconds: float = 300.0
    # A full read of the tracked items (BatchGetItem, 100 per call) now and then: a safety net for a change the
    # feed could miss. It cannot be turned off: 0 means the default, and it is at least
    # MIN_RECONCILE_INTERVAL_SECONDS.
    reconcile_interval_seconds: float = 300.0
    send_retries: int = 3
    task_queued_timeout_seconds: float = 600.0
    # check_health fails when the control plane's heartbeat (written by the reconciler every few minutes) is
    # older than this: events may not be reconciled. 0 turns the check off.
    heartbeat_max_age_seconds: float = 1800.0

    @property
    def is_fifo_queue(self) -> bool:
        return self.queue_url.endswith(".fifo")


def load_settings(conf: ConfSource, team_name: str | None = None) -> ExecutorSettings:
    """Read and validate ``[ecs_event_executor]``; raise ExecutorSettingsError naming a bad key."""

    def raw(key: str) -> str | None:
        value = conf.get(SECTION, key, fallback=DEFAULTS.get(key))
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def bad(key: str, problem: str) -> ExecutorSettingsError:
        return ExecutorSettingsError(
            f"[{SECTION}] {key} {problem} (set it in airflow.cfg or with {env_var_name(key, team_name)})"
        )

    def required(key: str) -> str:
        value = raw(key)
        if value is None:
            raise bad(key, "is required and not set")
        return value

    def boolean(key: str) -> bool:
        value = (raw(key) or "").lower()
        if value in ("true", "t", "1", "yes", "on"):
            return True
        if value in ("false", "f", "0", "no", "off"):
            return False
        raise bad(key, f"must be true or false, got {value!r}")

    def number(key: str, *, minimum: float, integer: bool = False) -> Any:
        value = raw(key)
        try:
            parsed: float = int(value or "") if integer else float(value or "")
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise bad(key, f"must be {kind}, got {value!r}") from None
        if parsed < minimum:
            raise bad(key, f"must be at least {minimum:g}, got {value}")
        return parsed

    queue_url = required("queue_url")
    if not queue_url.startswith(("https://", "http://")):
        raise bad(
            "queue_url",
            f"must be an SQS queue URL (https://sqs.<region>.amazonaws.com/...), got {queue_url!r}",
        )
    conn_id = raw("conn_id")
    try:
        queued_timeout = float(conf.get("scheduler", "task_queued_timeout", fallback="600") or 600)
    except ValueError:
        raise ExecutorSettingsError(
            f"[scheduler] task_queued_timeout must be a number ({env_var_name('task_queued_timeout', team_name, 'scheduler')})"
        ) from None
    return ExecutorSettings(
        queue_url=queue_url,
        table_name=required("table_name"),
        conn_id=None if conn_id is None or conn_id.lower() == "none" else conn_id,
        region_name=raw("region_name"),
        check_health_on_startup=boolean("check_health_on_startup"),
        owner=raw("owner"),
        max_run_task_attempts=_attempts(number("max_run_task_attempts", minimum=1, integer=True), bad),
        container_name=required("container_name"),
        log_group=raw("log_group"),
        log_stream_prefix=raw("log_stream_prefix") or "",
        sync_overlap_seconds=number("sync_overlap_seconds", minimum=0),
        end_wait_timeout_seconds=number("end_wait_timeout_seconds", minimum=0),
        reconcile_interval_seconds=_reconcile_interval(number("reconcile_interval_seconds", minimum=0), bad),
        send_retries=number("send_retries", minimum=0, integer=True),
        task_queued_timeout_seconds=queued_timeout,
        heartbeat_max_age_seconds=number("heartbeat_max_age_seconds", minimum=0),
    )


# The executor's safety net re-reads its tracked items at least this often apart, and always runs.
MIN_RECONCILE_INTERVAL_SECONDS = 30.0


def _reconcile_interval(value: float, bad: Any) -> float:
    if value == 0:
        return float(DEFAULTS["reconcile_interval_seconds"])
    if value < MIN_RECONCILE_INTERVAL_SECONDS:
        raise bad(
            "reconcile_interval_seconds",
            f"must be at least {MIN_RECONCILE_INTERVAL_SECONDS:g} (0 means the default, "
            f"{DEFAULTS['reconcile_interval_seconds']}; the safety net cannot be turned off), got {value:g}",
        )
    return value


# The launch message caps attempts (LaunchRequest.max_attempts); say so here rather than at the first task.
_MAX_ATTEMPTS_LIMIT = 20


def _attempts(value: int, bad: Any) -> int:
    if value > _MAX_ATTEMPTS_LIMIT:
        raise bad("max_run_task_attempts", f"must be at most {_MAX_ATTEMPTS_LIMIT}, got {value}")
    return value
