"""Sort AWS failures into kinds: retry later, retry with fresh credentials, or give up with the AWS reason."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"  # throttling, capacity, service or network trouble: try again later
    CREDENTIALS = "credentials"  # expired or missing credentials: rebuild clients, try again, do not count
    PERMANENT = "permanent"  # invalid parameters, access denied, missing resources: fail with the AWS reason


_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "ProvisionedThroughputExceededException",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "LimitExceededException",
    }
)
_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)


def classify(exc: BaseException) -> ErrorKind:
    """Return the kind of an exception raised by a boto3 call."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ErrorKind.CREDENTIALS
    if isinstance(exc, ParamValidationError):
        # botocore refused the parameters against the service model before sending: the same call fails again.
        return ErrorKind.PERMANENT
    if isinstance(
        exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError
    ):
        return ErrorKind.RETRYABLE
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _CREDENTIAL_CODES:
            return ErrorKind.CREDENTIALS
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            return ErrorKind.RETRYABLE
        return ErrorKind.PERMANENT
    return ErrorKind.RETRYABLE


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_text(exc: BaseException) -> str:
    """Return AWS's own words for an error: code and message."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


# RunTask `failures[]` reasons that mean "not now" rather than "never".
def run_task_failure_is_retryable(failure: dict[str, Any]) -> bool:
    """Return True when a RunTask ``failures[]`` entry is about capacity or a passing condition."""
    reason = str(failure.get("reason", ""))
    return (
        reason.startswith("RESOURCE:")
        or reason in ("AGENT", "Timeout", "TIMEOUT")
        or "Capacity is unavailable" in reason
        or "capacity" in reason.lower()
    )


def describe_failures(failures: list[dict[str, Any]]) -> str:
    return "; ".join(
        " ".join(p for p in (f.get("reason", "unknown"), f.get("detail") or "", f.get("arn") or "") if p)
        for f in failures
    )
