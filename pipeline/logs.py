"""Log lines for people (text) and for machines (one JSON object a line)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .render import json_value

__all__ = ["TEXT_LOG_FORMAT", "JsonLogFormatter"]

TEXT_LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

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
        return json.dumps(entry, ensure_ascii=False)
