"""Errors that the command line turns into exit statuses."""

from __future__ import annotations

from .redact import redact


class ConfigError(Exception):
    """Bad usage or configuration: exit status 2, with a one-line message that says what to fix.

    The message is redacted when the error is made, so that no reader of it (the CLI, Dagster's
    metadata, a log) can show credentials from a URL in it.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class DataError(ConfigError):
    """Files in the data dir are corrupt or unreadable: exit status 2, with the repair path."""
