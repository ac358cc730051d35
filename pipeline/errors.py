"""Errors that the command line turns into exit statuses."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad usage or configuration: exit status 2, with a one-line message that says what to fix."""

    exit_code = 2


class DataError(ConfigError):
    """Files in the data dir are corrupt or unreadable: exit status 2, with the repair path."""
