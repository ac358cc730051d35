"""Errors that the command line turns into exit statuses."""

from __future__ import annotations

from .redact import redact

__all__ = ["ConfigError", "DataError", "UserError", "WriterBusy"]


class UserError(Exception):
    """Something the user must fix before running again: exit status 2, one line saying what.

    The message is redacted when the error is made, so that no reader of it (the CLI, Dagster's
    metadata, a log) can show credentials from a URL in it.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ConfigError(UserError):
    """Bad usage or configuration: a flag, the sources file, credentials, an endpoint."""


class DataError(UserError):
    """Files in the data dir are corrupt, unreadable or misplaced; the message names the repair."""


class WriterBusy(ConfigError):
    """Another process holds the writer lock (of a target, or of the whole dataset)."""
