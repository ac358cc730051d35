"""Every default of a sync, in one place: the flags, the Dagster config, the sources file
and the core all take them from here.

Standard library only: the command line reads these to print --help without heavy imports.
"""

from __future__ import annotations

__all__ = [
    "CALL_DEADLINE_S",
    "COMMIT_INTERVAL_S",
    "CONCURRENCY",
    "CONNECT_TIMEOUT_S",
    "LOOKBACK_MINUTES",
    "MAX_ATTEMPTS",
    "MAX_CONCURRENCY",
    "READ_TIMEOUT_S",
    "RETRY_MODE",
    "RETRY_MODES",
]

CONCURRENCY = 16
"""Images listed in parallel. Listing is latency-bound, so this sets the speed; against an
account with a low API rate limit, cap the rate (max_rps) rather than lowering this."""
MAX_CONCURRENCY = 64
RETRY_MODES = ("standard", "adaptive")
RETRY_MODE = "standard"
MAX_ATTEMPTS = 10
"""Attempts per API call, the first one included (botocore's retries)."""
LOOKBACK_MINUTES = 10.0
"""How far before each watermark a listing starts again, for late writes."""
CONNECT_TIMEOUT_S = 10.0

CALL_DEADLINE_S = 120.0
"""The longest one API call may take, every attempt and back-off included."""
READ_TIMEOUT_S = 30.0
"""The longest silence within one HTTP attempt; the deadline, not this, bounds a trickle."""
COMMIT_INTERVAL_S = 30.0
"""A sync commits what it finished at least this often, so an interrupted one keeps it."""
