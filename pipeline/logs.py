"""Log lines for people (text) and for machines (one JSON object a line).

Either way a log line shows no control character raw (terminal.py): a text line escapes them,
a JSON line escapes them as JSON does, so its values stay exact.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .render import json_value
from .terminal import inert_json, printable

__all__ = ["QUIET_LOG_FORMAT", "TEXT_LOG_FORMAT", "JsonLogFormatter", "TextLogFormatter"]


class TextLogFormatter(logging.Formatter):
    """`time level logger: message` on one line, whatever the message holds, with every
    control character `printable`; a traceback below it keeps its newlines and tabs."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return printable(super().formatException(ei), multiline=True)

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info), multiline=True)


TEXT_LOG_FORMAT = TextLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
QUIET_LOG_FORMAT = TextLogFormatter("%(message)s")
"""Without -v: a warning as its bare message, as Python's last-resort handler shows one."""

# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept.
_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time (UTC), level, logger, message, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_FIELDS:
                entry[key] = json_value(value)
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return inert_json(json.dumps(entry, ensure_ascii=False))
