"""Every default of a sync, in one place: the options' declaration (settings.OPTIONS, from
which the flags, the Dagster config and the sources file derive) and the core take them from
here.

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
    "MAX_IN_FLIGHT",
    "ORCHESTRATED_WAIT_S",
    "PROCESS_PER_CORE_TARGETS",
    "READ_TIMEOUT_S",
    "RETRY_MODE",
    "RETRY_MODES",
    "TARGET_CONCURRENCY",
]

CONCURRENCY = 16
"""Images of one target listed in parallel. Listing is latency-bound, so this sets the speed;
the request rate adapts to the account's limits by itself (ratelimit.py)."""
MAX_CONCURRENCY = 64
TARGET_CONCURRENCY = 32
"""Targets (source x region, or member account x region) synced side by side. Each has its
own API limits and its own rate limiter, so many at once finish near the slowest one's pace."""
MAX_IN_FLIGHT = 64
"""Image listings in flight across all targets together: the workers are shared out among the
targets running (each gets at least one, and at most `CONCURRENCY`)."""
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
ORCHESTRATED_WAIT_S = 600.0
"""How long a Dagster run's sync of a target waits for another run syncing that target (a
schedule's run over every target beside a backfill of one, say). The CLI fails at once
unless given --wait."""
PROCESS_PER_CORE_TARGETS = 32
"""Targets from which `sync` runs a process per core by default (shares.py). One
process makes 500-750 no-change calls a second (1.3-2.0 ms of CPU each, docs/scaling.md);
32 targets at a typical limit of 20 requests/s offer about that. Fewer leave a second core
little to do, and its process would only add its start-up (0.5 s) and its own clients."""
