"""The error taxonomy, and the one function that maps AWS errors onto it.

Every failure lensops handles is one of three kinds:

- ``ManifestError``: the desired state is invalid; never retried, reported with
  file, line and resource, and the revision is refused.
- ``RetryableError``: throttling, 5xx, timeouts, eventual consistency; the daemon
  passes over the environment again after the error's ``delay`` (botocore already
  retried with backoff and jitter).
- ``PermanentError``: access denied, AWS validation errors; the resource is
  marked failed with AWS's message and not retried until its spec changes.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass

import botocore.exceptions
import botocore.parsers


def quoted(value: str, limit: int) -> str:
    """``value`` quoted for a one-line message, cut at ``limit`` characters: a name or value taken
    from the desired state, which may be of any length."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


class LensopsError(Exception):
    """Base of every error lensops raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem in the desired state, printed as ``path:line: Kind/name: message``.

    A ``warning`` (``path:line: Kind/name: warning: message``) is reported and refuses nothing.
    """

    path: str
    line: int
    ident: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        message = f"warning: {self.message}" if self.warning else self.message
        return f"{where}: {self.ident}: {message}" if self.ident else f"{where}: {message}"


class ManifestError(LensopsError):
    """The desired state is invalid: carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RetryableError(LensopsError):
    """A failure that time may fix: throttling, 5xx, timeouts, resource busy."""

    def __init__(self, message: str, delay: float = 5.0):
        self.delay = delay
        super().__init__(message)


class PermanentError(LensopsError):
    """A failure retrying cannot fix until the spec or revision changes."""


class UsageError(LensopsError):
    """The command line or the settings are wrong."""


_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestThrottled",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
}
_TRANSIENT = {
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServiceException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ResourceConflictException",
    "ResourceInUseException",
    "ConcurrentModificationException",
    "OperationAbortedException",
    "WAFOptimisticLockException",
    "WAFUnavailableEntityException",
    "ResourceNotReady",
}


def is_throttling(code: str) -> bool:
    """True when an AWS error code means "slow down"."""
    return code in _THROTTLING


_NOT_FOUND = re.compile(r"NotFound|NoSuch|Nonexistent")
"""Codes that say "no such thing": ResourceNotFoundException, NotFound, ParameterNotFound,
DBInstanceNotFound, ChangeSetNotFound, NoSuchEntity, NoSuchKey, WAFNonexistentItemException..."""
_READS = ("Describe", "Get", "List", "Head")


def is_absent(operation: str, code: str, status: int = 0, message: str = "") -> bool:
    """True when a read's error answer is the normal "it does not exist (yet)", not a failure.

    Observing an estate asks for what may not exist: a function's aliases
    before the function is deployed, a dashboard or a stack before the first
    apply, an SSM parameter a runbook will create. Such an answer to a
    ``Describe``/``Get``/``List``/``Head`` operation is the API working; the
    same code from a write (deleting what is gone) is not decided here.
    CloudFormation says it with ``ValidationError: Stack with id X does not
    exist``; S3's ``Head`` answers have no body, only their 404.
    """
    if not operation.startswith(_READS):
        return False
    if _NOT_FOUND.search(code) or (code == "ValidationError" and "does not exist" in message):
        return True
    return operation.startswith("Head") and status == 404


def classify(exc: BaseException) -> LensopsError:
    """Map any exception from botocore onto the taxonomy (the only place that does)."""
    if isinstance(exc, LensopsError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if not code or code.isdigit() or code == "Unknown":
            # botocore found no AWS error in the answer (a proxy's page): its status and first line of text
            line = _first_line(str(err.get("Message", ""))) if code.isdigit() else ""
            text = f"HTTP {status}: {line}" if line else f"HTTP {status} {_phrase(status)}: the answer is not an AWS error"
        else:
            text = f"{code}: {message}" if code else message
        if code in _THROTTLING or code in _TRANSIENT or status >= 500:
            return RetryableError(text)
        return PermanentError(text)
    if isinstance(
        exc,
        (
            botocore.exceptions.ConnectionError,
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.ReadTimeoutError,
            botocore.parsers.ResponseParserError,
            botocore.exceptions.WaiterError,
        ),
    ):
        return RetryableError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.ParamValidationError)):
        return PermanentError(f"{type(exc).__name__}: {exc}")
    return PermanentError(f"{type(exc).__name__}: {exc}")


_MARKUP = re.compile(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>|<(script|style)\b.*?</\1>", re.S | re.I)


def _first_line(body: str) -> str:
    """The first line of text in an answer's body, markup left out: a proxy page's ``502 Bad Gateway``."""
    text = re.sub(r"<[^>]*>", "\n", _MARKUP.sub(" ", body[:65536]))
    return next((" ".join(line.split())[:200] for line in text.splitlines() if line.strip()), "")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else ''."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
