"""Defaults that several layers show or use (flags, Dagster config, the sync itself).

Standard library only: the command line reads these to print --help without heavy imports.
"""

from __future__ import annotations

CALL_DEADLINE_S = 120.0
"""The longest one API call may take, every attempt and back-off included."""
READ_TIMEOUT_S = 30.0
"""The longest silence within one HTTP attempt; the deadline, not this, bounds a trickle."""
COMMIT_INTERVAL_S = 30.0
"""A sync commits what it finished at least this often, so an interrupted one keeps it."""
