"""Where a sync's Arrow buffers come from: the C library's allocator, unless the user chose one.

A sync allocates Arrow buffers on dozens of threads (every target's and every worker's), and
mimalloc, pyarrow's default on most platforms, keeps what each thread's heap once held. On a
first sync of 64 accounts in one process, peak RSS was 625 MB with mimalloc and 311 MB with
the system allocator, at the same CPU (docs/scaling.md, Memory).

pyarrow reads `ARROW_POOL_ENV` once, when it is imported, for its own default and for the one
its C++ code falls back on; switching later (`pa.set_memory_pool`) moves the first alone, and
kept 450 MB of the 625. So the processes that this project starts (the command line and its
children, the Dagster code location) choose before pyarrow is imported, and a sync in any other
process switches what it still can.
"""

from __future__ import annotations

import os

__all__ = ["ARROW_POOL_ENV", "choose_system_allocator", "prefer_system_allocator"]

ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
"""pyarrow's own choice of allocator; when it is set, the user's choice stands."""


def choose_system_allocator() -> None:
    """Before pyarrow is imported: the system allocator, unless `ARROW_POOL_ENV` names one
    (inherited by the processes this one starts)."""
    os.environ.setdefault(ARROW_POOL_ENV, "system")


def prefer_system_allocator() -> None:
    """Make the system allocator pyarrow's default in place of mimalloc, unless
    `ARROW_POOL_ENV` names one; a pool chosen in code (`pa.set_memory_pool`) other than
    mimalloc stays too.

    Buffers already allocated keep the pool they came from, so switching at any time is safe.
    """
    import pyarrow as pa

    if not os.environ.get(ARROW_POOL_ENV) and pa.default_memory_pool().backend_name == "mimalloc":
        pa.set_memory_pool(pa.system_memory_pool())
