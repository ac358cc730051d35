"""The product's errors: one rooted tree (errors.py), one reader of botocore's errors
(aws_errors.py), and one way to make a message one line (errors.one_line)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3.exceptions
import botocore.exceptions as botocore
import pytest

import pipeline
from pipeline import errors
from pipeline.aws_errors import (
    THROTTLING_CODES,
    AwsErrorKind,
    aws_errors_as,
    aws_failure,
    describe,
    error_code,
    kind_of,
    response_error_code,
)
from pipeline.emulator.validation import ApiError
from pipeline.errors import ConfigError, ImageVersionsError, StoreError, one_line
from pipeline.guard import CallDeadlineExceeded, Cancelled
from pipeline.schema import MalformedRecord
from pipeline.target_run import failure_reason
from pipeline.terminal import CONTROL_CHARACTERS, printable

PIPELINE = Path(pipeline.__file__).parent
EMULATOR = "pipeline.emulator"


def _exception_classes() -> Iterator[type[BaseException]]:
    """Every exception class defined in a module of `pipeline/` (its subpackages included)."""
    for module_info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        if module_info.name.endswith(".__main__"):
            continue  # running it starts the command line
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                yield value


def _label(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_exception_the_product_defines_derives_from_the_one_root() -> None:
    product = [cls for cls in _exception_classes() if not cls.__module__.startswith(EMULATOR)]
    assert len(product) >= 12, "the walk found too few classes to be looking everywhere"
    strays = [_label(cls) for cls in product if not issubclass(cls, ImageVersionsError)]
    assert strays == [], f"derive these from errors.ImageVersionsError: {strays}"


def test_the_emulator_which_plays_aws_has_its_own_root() -> None:
    emulator = [cls for cls in _exception_classes() if cls.__module__.startswith(EMULATOR)]
    assert ApiError in emulator
    strays = [_label(cls) for cls in emulator if not issubclass(cls, ApiError)]
    assert strays == [], (
        f"the emulator's errors are answers it sends: derive from ApiError: {strays}"
    )
    assert not any(issubclass(cls, ImageVersionsError) for cls in emulator)


def test_errors_py_maps_every_product_exception() -> None:
    documented = errors.__doc__ or ""
    missing = [
        _label(cls)
        for cls in _exception_classes()
        if not cls.__module__.startswith(EMULATOR)
        and not re.search(rf"\b{re.escape(cls.__qualname__)}\b", documented)
    ]
    assert missing == [], f"add these to the tree in errors.py's docstring: {missing}"


@pytest.mark.parametrize(
    ("cls", "also"),
    [
        (StoreError, OSError),
        (MalformedRecord, ValueError),
        (Cancelled, Exception),
    ],
)
def test_an_exception_that_must_also_be_another_kind_still_is(
    cls: type[BaseException], also: type[BaseException]
) -> None:
    assert issubclass(cls, ImageVersionsError) and issubclass(cls, also)


def test_a_store_error_reads_as_the_os_error_the_command_line_reports() -> None:
    error = StoreError("S3 PutObject of s3://b/k failed: boom")
    assert (error.strerror, error.filename, str(error)) == (
        None,
        None,
        "S3 PutObject of s3://b/k failed: boom",
    )


def test_errors_py_loads_with_the_standard_library_alone() -> None:
    code = (
        "import sys, pipeline.errors\n"
        "heavy = {'boto3', 'botocore', 'pyarrow', 'duckdb', 'dagster'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_only_aws_errors_reads_botocore_error_responses() -> None:
    reading = re.compile(r"""\[["']Error["']\]|\.get\(["']Error["']|THROTTL\w*_CODES\s*=""")
    readers = sorted(
        str(path.relative_to(PIPELINE))
        for path in PIPELINE.rglob("*.py")
        if reading.search(path.read_text()) and path.name != "aws_errors.py"
    )
    assert readers == [], f"read botocore's errors through aws_errors.py: {readers}"


def _client_error(
    code: str | None,
    message: str = "it failed",
    *,
    status: int = 400,
    operation: str = "DescribeImageVersion",
) -> botocore.ClientError:
    """A ClientError as botocore raises it, from the response dict its parsers make."""
    response: dict[str, Any] = {
        "ResponseMetadata": {"RequestId": "req-1", "HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    if code is not None:
        response["Error"] = {"Code": code, "Message": message}
    return botocore.ClientError(response, operation)


ANSWERS = [
    *((_client_error(code), AwsErrorKind.THROTTLED) for code in sorted(THROTTLING_CODES)),
    (_client_error("ResourceNotFound", "Image x does not exist"), AwsErrorKind.NOT_FOUND),
    (_client_error("NoSuchKey", status=404, operation="DeleteObject"), AwsErrorKind.NOT_FOUND),
    (_client_error("NoSuchBucket", status=404, operation="PutObject"), AwsErrorKind.NOT_FOUND),
    (_client_error("404", "Not Found", status=404, operation="HeadObject"), AwsErrorKind.NOT_FOUND),
    (_client_error("404", "Not Found", status=404, operation="HeadBucket"), AwsErrorKind.NOT_FOUND),
    (_client_error("AccessDeniedException", status=400), AwsErrorKind.ACCESS_DENIED),
    (_client_error("AccessDenied", status=403, operation="PutObject"), AwsErrorKind.ACCESS_DENIED),
    (
        _client_error("403", "Forbidden", status=403, operation="HeadBucket"),
        AwsErrorKind.ACCESS_DENIED,
    ),
    (_client_error("ExpiredTokenException", status=400), AwsErrorKind.EXPIRED_CREDENTIALS),
    (_client_error("ExpiredToken", status=400), AwsErrorKind.EXPIRED_CREDENTIALS),
    (_client_error("InvalidNextToken"), AwsErrorKind.BAD_PAGE_TOKEN),
    (_client_error("ExpiredNextToken"), AwsErrorKind.BAD_PAGE_TOKEN),
    (
        _client_error("ValidationException", "The NextToken has expired"),
        AwsErrorKind.BAD_PAGE_TOKEN,
    ),
    (_client_error("PreconditionFailed", status=412), AwsErrorKind.CONDITION_FAILED),
    (_client_error("ConditionalRequestConflict", status=409), AwsErrorKind.CONDITION_FAILED),
    (_client_error("InternalFailure", status=500), AwsErrorKind.SERVER_ERROR),
    (_client_error("503", "Service Unavailable", status=503), AwsErrorKind.SERVER_ERROR),
    (_client_error("ValidationException", "Value 'x' at 'imageName' failed"), AwsErrorKind.OTHER),
    (_client_error(None), AwsErrorKind.OTHER),
]
"""Errors a service answered with, and what each is."""

NO_ANSWERS = [
    (botocore.EndpointConnectionError(endpoint_url="https://api.sagemaker"), AwsErrorKind.NETWORK),
    (botocore.ConnectTimeoutError(endpoint_url="https://api.sagemaker"), AwsErrorKind.NETWORK),
    (botocore.ConnectionClosedError(endpoint_url="https://api.sagemaker"), AwsErrorKind.NETWORK),
    (botocore.ReadTimeoutError(endpoint_url="https://api.sagemaker"), AwsErrorKind.TIMED_OUT),
    (CallDeadlineExceeded("no complete answer within 60 s"), AwsErrorKind.TIMED_OUT),
    (botocore.NoCredentialsError(), AwsErrorKind.NO_CREDENTIALS),
    (botocore.PartialCredentialsError(provider="env", cred_var="key"), AwsErrorKind.NO_CREDENTIALS),
    (botocore.ProfileNotFound(profile="nope"), AwsErrorKind.BAD_PROFILE),
    (botocore.ConfigParseError(path="~/.aws/config"), AwsErrorKind.BAD_PROFILE),
    (
        botocore.TokenRetrievalError(provider="sso", error_msg="the session expired"),
        AwsErrorKind.EXPIRED_CREDENTIALS,
    ),
    (botocore.UnauthorizedSSOTokenError(), AwsErrorKind.EXPIRED_CREDENTIALS),
    (botocore.ParamValidationError(report="MaxResults is not an integer"), AwsErrorKind.OTHER),
    (boto3.exceptions.S3UploadFailedError("upload failed"), AwsErrorKind.OTHER),
]
"""Errors no service sent: botocore's, boto3's, and the call guard's deadline."""


@pytest.mark.parametrize(("error", "kind"), ANSWERS + NO_ANSWERS, ids=repr)
def test_each_aws_error_is_read_as_its_kind(error: Exception, kind: AwsErrorKind) -> None:
    assert kind_of(error) is kind


def test_a_bare_404_proves_absence_only_for_a_head_request() -> None:
    """A HEAD answer has no body to name its error; any other call's bare 404 is a proxy's page
    for a wrong path, and must never tombstone a version."""
    proxy_page = _client_error("404", "Not Found", status=404, operation="DescribeImageVersion")
    assert kind_of(proxy_page) is AwsErrorKind.OTHER


@pytest.mark.parametrize(
    "error",
    [ValueError("x"), MalformedRecord("Version is not an integer"), Cancelled(), OSError(28, "x")],
)
def test_what_is_not_an_aws_error_is_not_read_as_one(error: Exception) -> None:
    assert (aws_failure(error), kind_of(error), error_code(error)) == (None, None, None)


def test_an_answer_keeps_its_code_and_text_and_no_answer_has_a_code() -> None:
    answered = aws_failure(_client_error("ThrottlingException", "Rate exceeded"))
    assert answered is not None and answered.code == "ThrottlingException"
    assert answered.detail == (
        "An error occurred (ThrottlingException) when calling the DescribeImageVersion "
        "operation: Rate exceeded"
    )
    unanswered = aws_failure(botocore.EndpointConnectionError(endpoint_url="http://x"))
    assert unanswered is not None and unanswered.code is None


def test_the_error_code_of_a_parsed_answer() -> None:
    assert response_error_code({"Error": {"Code": "ThrottlingException"}}) == "ThrottlingException"
    assert response_error_code({"ResponseMetadata": {}}) is None
    assert response_error_code({"Error": "not a mapping"}) is None
    assert response_error_code(None) is None


def test_describe_names_a_service_error_by_its_code_and_anything_else_by_its_type() -> None:
    assert describe(_client_error("AccessDeniedException", "not allowed")) == (
        "AccessDeniedException: not allowed"
    )
    assert describe(botocore.NoCredentialsError()) == (
        "NoCredentialsError: Unable to locate credentials"
    )


def test_aws_errors_as_raises_the_products_exception_chained_to_botocores() -> None:
    original = _client_error("AccessDeniedException", "not allowed to assume")
    with pytest.raises(ConfigError) as raised, aws_errors_as(ConfigError, "cannot assume role r"):
        raise original
    assert str(raised.value) == (
        "cannot assume role r: An error occurred (AccessDeniedException) when calling the "
        "DescribeImageVersion operation: not allowed to assume"
    )
    assert raised.value.__cause__ is original


def test_aws_errors_as_lets_the_message_depend_on_the_kind() -> None:
    def problem(failure: Any) -> str:
        return f"{failure.kind.value} ({failure.code})"

    missing = _client_error("404", "Not Found", status=404, operation="HeadBucket")
    with (
        pytest.raises(StoreError, match=r"^not found \(404\)$"),
        aws_errors_as(StoreError, problem),
    ):
        raise missing


@pytest.mark.parametrize(
    "error", [ValueError("a bug"), Cancelled(), ConfigError("already the product's")]
)
def test_aws_errors_as_lets_every_other_exception_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, aws_errors_as(StoreError, "writing"):
        raise error
    assert raised.value is error


def test_aws_errors_as_redacts_through_a_user_error() -> None:
    unreachable = botocore.EndpointConnectionError(endpoint_url="http://me:s3cr3t@host:1")
    with pytest.raises(ConfigError) as raised, aws_errors_as(ConfigError, "cannot reach"):
        raise unreachable
    assert "s3cr3t" not in str(raised.value)


LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def test_one_line_leaves_no_line_break_of_any_kind() -> None:
    text = "".join(f"word{i}{brk}{brk}  " for i, brk in enumerate(LINE_BREAKS)) + "\r\nend"
    cleaned = one_line(text)
    assert cleaned.splitlines() == [cleaned]
    assert cleaned == " ".join(f"word{i}" for i in range(len(LINE_BREAKS))) + " end"


def test_one_line_leaves_control_characters_to_printable() -> None:
    hostile = "boom\x1b[2J\x1b]0;title\x07\x9b31m\u202eevil\ttab\x00nul"
    cleaned = one_line(hostile)
    assert "\x1b[2J" in cleaned and "\u202e" in cleaned  # JSON output keeps the exact value
    shown = printable(cleaned)
    assert not set(shown) & CONTROL_CHARACTERS
    assert shown == "boom\\x1b[2J\\x1b]0;title\\x07\\x9b31m\\u202eevil tab\\x00nul"


def test_one_line_masks_credentials_in_urls() -> None:
    assert one_line("cannot reach\nhttp://me:s3cr3t@host:1/x") == "cannot reach http://***@host:1/x"


def test_one_line_keeps_a_very_long_message_whole_unless_told_to_cut_it() -> None:
    words = [f"w{i}" for i in range(200_000)]
    long = "\n".join(words)
    assert one_line(long) == " ".join(words)
    assert one_line(long, max_chars=2000) == " ".join(words)[:2000]


def test_a_cut_never_leaves_part_of_a_password() -> None:
    text = "failed at http://user:s3cr3tpass@host/path and more"
    for max_chars in range(len(text) + 1):
        cut = one_line(text, max_chars=max_chars)
        assert len(cut) <= max_chars
        assert not any(part in cut for part in ("s3c", "3cr", "tpa", "pass@"))


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "\u2028"])
def test_one_line_of_nothing_is_empty(text: str) -> None:
    assert one_line(text) == ""


def test_a_failure_reason_is_one_redacted_line() -> None:
    hostile = _client_error("ValidationException", "bad\nvalue at http://u:pw@h\r\n  next")
    assert failure_reason(hostile) == "ValidationException: bad value at http://***@h next"
    assert failure_reason(MalformedRecord("Version is\nnot an integer")) == (
        "MalformedRecord: Version is not an integer"
    )
