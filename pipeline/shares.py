"""How many processes a `sync` runs, and each one's share of the targets (`fanout.py`),
from what the data dir knows of them: which targets earlier syncs reached, and the images in
each one's account."""

from __future__ import annotations

import os
from collections.abc import Collection

from .defaults import PROCESS_PER_CORE_TARGETS
from .fanout import plan_shards
from .state import known_target_images, known_target_keys
from .storage import DataDir

__all__ = ["default_processes", "plan_by_cost"]


def default_processes(data_dir: DataDir, sources: Collection[str]) -> int:
    """`sync`'s processes when `--processes` is not given: the cores, once the data dir knows
    `PROCESS_PER_CORE_TARGETS` targets of `sources`."""
    if len(known_target_keys(data_dir, sources)) < PROCESS_PER_CORE_TARGETS:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_by_cost(data_dir: DataDir, sources: Collection[str], count: int) -> dict[str, int]:
    """`plan_shards` of the targets of `sources` an earlier sync reached, each weighed by
    the images in its account's state (a call each) and its ListImages call."""
    images = known_target_images(data_dir, sources)
    return plan_shards({key: 1 + found for key, found in images.items()}, count)
