"""Secrets in URLs (`pipeline.redact`): what errors and log lines may carry."""

from __future__ import annotations

import logging
import sys

from pipeline.errors import ConfigError
from pipeline.redact import RedactingFilter


def test_a_password_in_a_url_never_leaves_an_error_or_a_log_line() -> None:
    assert "s3cret" not in str(ConfigError("cannot reach http://user:s3cret@host:1/"))
    try:
        raise OSError('Could not connect to "http://user:s3cret@127.0.0.1:9/"')
    except OSError:
        record = logging.LogRecord(
            "pipeline.x", logging.ERROR, __file__, 1, "failed %s", ("http://u:s3cret@h",), None
        )
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "s3cret" not in formatted and "***@" in formatted
