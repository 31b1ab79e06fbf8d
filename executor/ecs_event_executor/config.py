"""The executor's settings: the ``[ecs_event_executor]`` section, read once at start and validated.

Values come from Airflow's configuration through the executor's ``ExecutorConf``, so per-team values work the
way Airflow resolves them (``AIRFLOW__<TEAM>___ECS_EVENT_EXECUTOR__<KEY>``), and are parsed by one pydantic model
(``ExecutorSettings``, a field per key). A missing or invalid value raises ``ExecutorSettingsError`` naming the
key and the environment variable that sets it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticUndefined

from ecs_event_executor.control.executor_config import account_ecr_pattern
from ecs_event_executor.control.launch_profiles import UNKNOWN_QUEUE_POLICIES

SECTION = "ecs_event_executor"


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
DEFAULT_RECONCILE_INTERVAL_SECONDS = 300.0


def _reconcile_interval(value: float) -> float:
    if value == 0:
        return DEFAULT_RECONCILE_INTERVAL_SECONDS
    if value < MIN_RECONCILE_INTERVAL_SECONDS:
        raise ValueError(
            f"must be at least {MIN_RECONCILE_INTERVAL_SECONDS:g} (0 means the default, "
            f"{DEFAULT_RECONCILE_INTERVAL_SECONDS:g}; the safety net cannot be turned off), got {value:g}"
        )
    return value


# The package version that introduced each key; a key added later names its own version.
FIRST_VERSION = "0.1.0"


def _key(
    default: Any, description: str, *, example: str | None = None, version_added: str = FIRST_VERSION
) -> Any:
    """Declare an ``[ecs_event_executor]`` key: its default, its documentation and an example value.

    The provider's configuration (``ecs_event_executor.provider``), ``airflow config list`` and the table in
    docs/executor.md all read these, so a key is described in this one place.
    """
    extra: JsonDict = {"example": example, "version_added": version_added}
    return Field(default, description=description, json_schema_extra=extra)


class ExecutorSettings(BaseModel):
    """Validated settings of one executor instance; each field is the ``[ecs_event_executor]`` key of its name.

    Defaults follow AwsEcsExecutor where the setting exists there (conn_id, max_run_task_attempts, health check).
    """

    model_config = ConfigDict(frozen=True)

    queue_url: Annotated[str, BeforeValidator(_required), AfterValidator(_queue_url)] = _key(
        ...,
        "URL of the control plane's launch queue (stack output).",
        example="https://sqs.eu-west-1.amazonaws.com/123456789012/airflow-ecs-launch",
    )
    table_name: _RequiredText = _key(
        ..., "Name of the task table (stack output).", example="airflow-ecs-TasksTable1234ABCD"
    )
    conn_id: Annotated[str | None, BeforeValidator(_conn_id)] = _key(
        "aws_default",
        "Airflow AWS connection for the clients (as AwsEcsExecutor). `none` or empty: boto3's default "
        "credential chain.",
        example="aws_default",
    )
    region_name: str | None = _key(None, "AWS region. Unset: the connection's.", example="eu-west-1")
    check_health_on_startup: Annotated[bool, BeforeValidator(_boolean)] = _key(
        True,
        "At start, run `check_health`: the task table is readable, the queue takes a `ping`, the reconciler's "
        "heartbeat is fresh, ECS accepts the launcher's RunTask and ECS events reach the status function; fail "
        "the scheduler with a message naming each broken part.",
        example="True",
    )
    owner: str | None = _key(
        None,
        'The change-feed partition of this executor. Unset: `<team or "default">:<scheduler job id>`, so '
        "each scheduler reads only its own tasks.",
        example="default:42",
    )
    max_run_task_attempts: Annotated[int, _number(minimum=1, integer=True, maximum=_MAX_ATTEMPTS_LIMIT)] = (
        _key(
            3,
            "ECS tasks started per Airflow try for infrastructure failures (failed to start, Spot "
            f"interruption), as AwsEcsExecutor. At most {_MAX_ATTEMPTS_LIMIT}.",
            example="3",
        )
    )
    container_name: _RequiredText = _key(
        "base",
        "The Airflow container in the task definition (must match the launcher's `CONTAINER_NAME`; stack "
        "output).",
        example="base",
    )
    log_group: str | None = _key(
        None,
        "CloudWatch Logs group of the awslogs driver (stack output); unset: the UI shows only the control "
        "plane's record.",
        example="/airflow-ecs/tasks",
    )
    log_stream_prefix: Annotated[str, BeforeValidator(lambda value: value or "")] = _key(
        "airflow",
        "awslogs stream prefix; streams are `<prefix>/<container_name>/<ecs task id>`.",
        example="airflow",
    )
    sync_overlap_seconds: Annotated[float, _number(minimum=0)] = _key(
        15.0,
        "Each read of the change feed starts this long before where the previous one started, in the "
        "writers' (the Lambdas') clock: it covers the index's lag and differences between the Lambdas' "
        "clocks, not the scheduler's clock. The feed learns how far the Lambdas' clocks are from the "
        "scheduler's from the change times it reads, so a scheduler clock minutes off misses nothing; the "
        "scheduler's clock only measures time between reads. A change is re-read (and dropped by version) "
        "during this window; after it, a quiet read returns nothing.",
        example="15",
    )
    end_wait_timeout_seconds: Annotated[float, _number(minimum=0)] = _key(
        300.0,
        "How long `end()` (scheduler shutdown) waits for this executor's tasks. Tasks left running are "
        "adopted by the next scheduler.",
        example="300",
    )
    # A full read of the tracked items (BatchGetItem, 100 per call) now and then: a safety net for a change the
    # feed could miss. It cannot be turned off: 0 means the default, and it is at least
    # MIN_RECONCILE_INTERVAL_SECONDS.
    reconcile_interval_seconds: Annotated[float, _number(minimum=0), AfterValidator(_reconcile_interval)] = (
        _key(
            DEFAULT_RECONCILE_INTERVAL_SECONDS,
            "A safety net for a change the feed missed (an index entry that never showed, a bug): the "
            "executor re-reads its tracked items directly, one BatchGetItem of 100 per due loop, so a full "
            "pass takes this long and a loop never makes more than one extra request. It cannot be turned "
            f"off: `0` means the default (300), and other values must be at least "
            f"{MIN_RECONCILE_INTERVAL_SECONDS:g}.",
            example="300",
        )
    )
    send_retries: Annotated[int, _number(minimum=0, integer=True)] = _key(
        3,
        "Extra SendMessageBatch calls for entries SQS did not accept; what is still unsent is retried on "
        "the next loop.",
        example="3",
    )
    # A launch is not started later than this before its workload's token expires: Fargate takes 30-120 s to
    # start a task, and the task's first Execution API call needs a valid token.
    launch_start_margin_seconds: Annotated[float, _number(minimum=0)] = _key(
        180.0,
        "A launch is not started later than this before its workload's token expires (the token's `exp` "
        "claim; without one, the Airflow version's token lifetime after queueing): Fargate takes 30-120 s to start a task, "
        "and the task's first Execution API call needs a valid token. At most half the token's remaining "
        "life at queue time (a short `task_queued_timeout`). A launch that cannot start in time is handed "
        "back: Airflow's stuck-in-queued check revokes and requeues it without using a try.",
        example="180",
    )
    # From [scheduler] task_queued_timeout, read by load_settings.
    task_queued_timeout_seconds: float = 600.0
    # How long a workload token is valid when it carries no exp claim, from the option the Airflow version signs
    # it with (airflow_compat.token_lifetime_option), read by load_settings.
    token_lifetime_seconds: float = 600.0
    # check_health fails when the control plane's heartbeat (written by the reconciler every few minutes) is
    # older than this: events may not be reconciled. 0 turns the check off.
    heartbeat_max_age_seconds: Annotated[float, _number(minimum=0)] = _key(
        1800.0,
        "`check_health` fails when the control plane's heartbeat (written by the reconciler Lambda every few "
        "minutes) is older than this; a missing heartbeat (a stack that has not reconciled yet) is only a "
        "warning. `0` turns the check off.",
        example="1800",
    )
    worker_airflow_version: str | None = _key(
        None,
        "The Airflow version of the worker image (stack output `AirflowWorkerAirflowVersion`); at start the "
        "executor logs a warning when it differs from the scheduler's. Unset: not checked.",
        example="3.3.2",
    )
    allowed_images: Annotated[tuple[str, ...] | None, BeforeValidator(_names)] = _key(
        None,
        'Images a task\'s `executor_config` may name (`"image"`): comma-separated shell-style patterns. Unset: '
        "`<account>.dkr.ecr.<region>.amazonaws.com/*` of the queue URL's account and region. Any other image fails "
        "the task when it is queued, naming this key (stack output `AirflowAllowedImages`).",
        example="public.ecr.aws/acme/*, 123456789012.dkr.ecr.eu-west-1.amazonaws.com/*",
    )
    launch_profiles: Annotated[tuple[str, ...] | None, BeforeValidator(_names)] = _key(
        None,
        "The stack's launch profile names, comma-separated (stack output `AirflowLaunchProfiles`). Set, a task "
        "whose `queue` names none of them (nor `default`) is handled by `unknown_queue` when it is queued; unset, "
        "only the launcher decides.",
        example="spot,gpu",
    )
    unknown_queue: Annotated[str, AfterValidator(_unknown_queue)] = _key(
        "default",
        "`default`: a task whose queue names no launch profile runs on the default profile; `refuse`: it fails "
        "when it is queued, naming the queue and this key (with `launch_profiles` set).",
        example="refuse",
    )

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


# The keys of [ecs_event_executor], in the order a problem is reported (task_queued_timeout_seconds and
# token_lifetime_seconds come from other sections, read by load_settings).
_KEYS = tuple(
    name
    for name in ExecutorSettings.model_fields
    if name not in ("task_queued_timeout_seconds", "token_lifetime_seconds")
)


def setting_keys() -> tuple[str, ...]:
    """Return the keys of ``[ecs_event_executor]``, in declaration order."""
    return _KEYS


def default_text(value: Any) -> str | None:
    """Return a default as Airflow's configuration writes it (``True``, ``3``, ``15``); None for none."""
    if value is None or value is PydanticUndefined:
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# Each key's default as the text Airflow's configuration holds (absent: no default).
DEFAULTS: dict[str, str] = {
    key: text
    for key in _KEYS
    if (text := default_text(ExecutorSettings.model_fields[key].default)) is not None
}


def load_settings(
    conf: ConfSource,
    team_name: str | None = None,
    token_lifetime_option: tuple[str, str] = ("scheduler", "task_queued_timeout"),
) -> ExecutorSettings:
    """Read and validate ``[ecs_event_executor]``; raise ExecutorSettingsError naming a bad key.

    ``token_lifetime_option`` is the (section, key) that sets how long the Airflow version's workload tokens are
    valid (airflow_compat.token_lifetime_option).
    """

    def raw(key: str) -> str | None:
        value = conf.get(SECTION, key, fallback=DEFAULTS.get(key))
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def seconds(section: str, key: str) -> float:
        try:
            return float(conf.get(section, key, fallback="600") or 600)
        except ValueError:
            raise ExecutorSettingsError(
                f"[{section}] {key} must be a number ({env_var_name(key, team_name, section)})"
            ) from None

    queued_timeout = seconds("scheduler", "task_queued_timeout")
    token_lifetime = seconds(*token_lifetime_option)
    try:
        return ExecutorSettings.model_validate(
            {key: raw(key) for key in _KEYS}
            | {"task_queued_timeout_seconds": queued_timeout, "token_lifetime_seconds": token_lifetime}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0])
        cause = (error.get("ctx") or {}).get("error")
        problem = str(cause) if cause is not None else error["msg"]
        raise ExecutorSettingsError(
            f"[{SECTION}] {key} {problem} (set it in airflow.cfg or with {env_var_name(key, team_name)})"
        ) from None


def worker_version_mismatch(worker_version: str | None, scheduler_version: str) -> str | None:
    """Return a warning when the workers' Airflow (``worker_airflow_version``) is not the scheduler's; else None.

    Workers run the task SDK against the scheduler's API server and DAGs parsed by the scheduler's Airflow: a
    different version may run, but is not what either was tested with.
    """
    if not worker_version or _same_version(worker_version, scheduler_version):
        return None
    return (
        f"the worker image runs Airflow {worker_version} ([{SECTION}] worker_airflow_version) but this scheduler "
        f"runs Airflow {scheduler_version}; build the worker image for {scheduler_version} "
        "(worker/Dockerfile, AIRFLOW_VERSION) and redeploy the stack"
    )


def _same_version(left: str, right: str) -> bool:
    # packaging comes with Airflow; imported here so the package's own dependencies stay boto3 and pydantic.
    from packaging.version import InvalidVersion, Version

    try:
        return Version(left) == Version(right)
    except InvalidVersion:
        return left.strip() == right.strip()
