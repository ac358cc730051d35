"""botocore's and boto3's errors, read in one place.

Everything the product needs to know of an AWS error is here: its code (`error_code`), what
kind of failure it is (`aws_failure`, `kind_of`: throttled, not found, access denied, expired
credentials...), the one line that names it in a failure (`describe`), and the one context
manager that turns it into the product's own exception (`aws_errors_as`). No other module
reads a ClientError's response or picks botocore's exception classes apart, so which codes
mean throttling or absence has one home.

botocore is imported only where an error is read: by then it is loaded, and `--help` never
loads it.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .guard import CallDeadlineExceeded

__all__ = [
    "THROTTLING_CODES",
    "AwsErrorKind",
    "AwsFailure",
    "aws_errors_as",
    "aws_failure",
    "describe",
    "error_code",
    "kind_of",
    "response_error_code",
]


class AwsErrorKind(enum.Enum):
    """What went wrong with a call to AWS, whatever the service's own word for it."""

    THROTTLED = "throttled"
    NOT_FOUND = "not found"
    ACCESS_DENIED = "access denied"
    EXPIRED_CREDENTIALS = "expired credentials"
    NO_CREDENTIALS = "no credentials"
    BAD_PROFILE = "bad profile"
    """The AWS config or credentials file, or the profile named in it, cannot be used."""
    BAD_PAGE_TOKEN = "bad page token"
    """A listing's NextToken refused as expired or invalid: the listing must start again."""
    CONDITION_FAILED = "condition failed"
    """An S3 conditional write (If-Match, If-None-Match) lost: another writer got there."""
    NETWORK = "network"
    """No answer: the endpoint could not be connected to, or the connection broke."""
    TIMED_OUT = "timed out"
    SERVER_ERROR = "server error"
    OTHER = "other"


THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
"""The throttling error codes botocore's retry handlers recognise for JSON services."""

_KIND_OF_CODE: Mapping[str, AwsErrorKind] = {
    **dict.fromkeys(THROTTLING_CODES, AwsErrorKind.THROTTLED),
    # SageMaker's ResourceNotFound is the only proof that an image version was deleted.
    **dict.fromkeys(
        ("ResourceNotFound", "NoSuchKey", "NoSuchBucket", "NotFound"), AwsErrorKind.NOT_FOUND
    ),
    **dict.fromkeys(
        ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"),
        AwsErrorKind.ACCESS_DENIED,
    ),
    **dict.fromkeys(("ExpiredToken", "ExpiredTokenException"), AwsErrorKind.EXPIRED_CREDENTIALS),
    **dict.fromkeys(
        ("InvalidNextToken", "InvalidPaginationToken", "ExpiredNextToken"),
        AwsErrorKind.BAD_PAGE_TOKEN,
    ),
    **dict.fromkeys(
        ("PreconditionFailed", "ConditionalRequestConflict"), AwsErrorKind.CONDITION_FAILED
    ),
}

_KIND_OF_BODILESS_STATUS = {"404": AwsErrorKind.NOT_FOUND, "403": AwsErrorKind.ACCESS_DENIED}
"""An answer without a body (S3's to a HEAD request) has no code: botocore gives it its HTTP
status instead. Only a HEAD's is taken for absence; any other call's bare 404 is a proxy's
page for a wrong path, which proves nothing about the resource."""


@dataclass(frozen=True)
class AwsFailure:
    """A botocore or boto3 error (or a call's spent deadline), read."""

    kind: AwsErrorKind
    code: str | None
    """The service's error code; None when no service answered."""
    detail: str
    """The error's own text (botocore's names the code, the operation and the message)."""


def response_error_code(response: Mapping[str, Any] | None) -> str | None:
    """The error code of a parsed answer (a ClientError's `response`, or what botocore's
    needs-retry event is given); None when it names none."""
    error = (response or {}).get("Error")
    code = error.get("Code") if isinstance(error, Mapping) else None
    return None if code is None else str(code)


def error_code(exc: BaseException) -> str | None:
    """The service's error code of a ClientError; None for anything else."""
    from botocore.exceptions import ClientError

    return response_error_code(exc.response) if isinstance(exc, ClientError) else None


def _kind_of_answer(exc: Any) -> AwsErrorKind:
    """The kind of a ClientError: the service answered, with an error."""
    code = response_error_code(exc.response) or ""
    if code in _KIND_OF_CODE:
        return _KIND_OF_CODE[code]
    if code in _KIND_OF_BODILESS_STATUS and exc.operation_name.startswith("Head"):
        return _KIND_OF_BODILESS_STATUS[code]
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    if code == "ValidationException" and "token" in message:
        return AwsErrorKind.BAD_PAGE_TOKEN
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if isinstance(status, int) and status >= 500:
        return AwsErrorKind.SERVER_ERROR
    return AwsErrorKind.OTHER


@functools.cache
def _kinds_of_no_answer() -> tuple[tuple[tuple[type[BaseException], ...], AwsErrorKind], ...]:
    """botocore's and boto3's exceptions that no service sent, by kind, most specific first."""
    import boto3.exceptions
    import botocore.exceptions as botocore

    return (
        ((botocore.ReadTimeoutError, CallDeadlineExceeded), AwsErrorKind.TIMED_OUT),
        ((botocore.ConnectionError, botocore.HTTPClientError), AwsErrorKind.NETWORK),
        (
            (
                botocore.NoCredentialsError,
                botocore.PartialCredentialsError,
                botocore.CredentialRetrievalError,
            ),
            AwsErrorKind.NO_CREDENTIALS,
        ),
        (
            (
                botocore.ProfileNotFound,
                botocore.ConfigParseError,
                botocore.ConfigNotFound,
                botocore.InvalidConfigError,
            ),
            AwsErrorKind.BAD_PROFILE,
        ),
        (
            (botocore.TokenRetrievalError, botocore.SSOError),
            AwsErrorKind.EXPIRED_CREDENTIALS,
        ),
        ((botocore.BotoCoreError, boto3.exceptions.Boto3Error), AwsErrorKind.OTHER),
    )


def aws_failure(exc: BaseException) -> AwsFailure | None:
    """What `exc` says, when it is botocore's or boto3's (or a call's spent deadline,
    `guard.CallDeadlineExceeded`, raised in place of botocore's send); None for anything
    else, which is not an AWS error."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return AwsFailure(_kind_of_answer(exc), error_code(exc), str(exc))
    for classes, kind in _kinds_of_no_answer():
        if isinstance(exc, classes):
            return AwsFailure(kind, None, str(exc))
    return None


def kind_of(exc: BaseException) -> AwsErrorKind | None:
    """The kind of an AWS error (see `aws_failure`); None when `exc` is not one."""
    failure = aws_failure(exc)
    return None if failure is None else failure.kind


def describe(exc: BaseException) -> str:
    """`exc` as a failure names it: a service's error as `Code: Message`, anything else as
    `TypeName: text`. Not yet one line: see `errors.one_line`."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def aws_errors_as(
    into: Callable[[str], Exception], doing: str | Callable[[AwsFailure], str]
) -> Iterator[None]:
    """Inside, an AWS error (see `aws_failure`) is raised as `into(message)`, chained to it; any
    other exception passes unchanged.

    The message is `"{doing}: {the error's text}"`, or `doing(failure)` when the message
    depends on what failed.
    """
    try:
        yield
    except Exception as exc:
        failure = aws_failure(exc)
        if failure is None:
            raise
        message = f"{doing}: {failure.detail}" if isinstance(doing, str) else doing(failure)
        raise into(message) from exc
