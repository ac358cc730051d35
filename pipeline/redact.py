"""Secrets never leave botocore: credentials inside URLs are masked in every text we emit.

A user may give an endpoint as `http://user:password@host`; botocore and our own messages
repeat the URL. Every message, log line, failure, state field and Dagster metadata value
passes through `redact` first.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactingFilter", "redact"]

# [scheme://]userinfo@host: everything up to the token's last '@' is masked, since a password
# may hold '/', '?' or '#' that a URL parser would take for the start of the path. An e-mail
# address in a message is masked too: the price of never showing a password.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?[^\s\"'<>]+@(?=[^\s\"'<>@])")
MASK = "***"


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda match: f"{match['scheme'] or ''}{MASK}@", text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message (arguments merged in) and its traceback before any handler
    formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set instead of formatting exc_info again.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
