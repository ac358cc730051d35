"""Values from API responses that did not parse, and how to show API values in messages.

Kept apart from schema.py (which imports pyarrow) because botocore's response parser, set up
in source.py, needs `Unparsed` and the command line must start without heavy imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Unparsed", "shown"]

_SHOWN_CHARS = 60


class Unparsed:
    """A response timestamp that did not parse, kept for the record's validation to reject.

    botocore parses timestamps while it parses the whole page; raising there would fail every
    record of the page (a whole region for ListImages), so the parser returns this instead.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"Unparsed({shown(self.raw)})"


def shown(value: Any) -> str:
    """A bounded repr of a value from the API, for messages (a hostile server may send MBs)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
