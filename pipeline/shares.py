"""How many processes a `sync` runs, and each one's share of the targets (`fanout.py`),
from what the data dir knows of them: which targets earlier syncs reached, and the images in
each one's account; and, for an organization never synced, its accounts."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from .defaults import PROCESS_PER_CORE_TARGETS
from .errors import ConfigError
from .fanout import plan_shards
from .model import target_key_source
from .run import SourceTarget
from .source import AccountListings, organization_members
from .state import known_target_images, known_target_keys
from .storage import DataDir

__all__ = ["default_processes", "plan_by_cost", "processes_for"]


def default_processes(
    data_dir: DataDir, targets: Sequence[SourceTarget], accounts: AccountListings
) -> int:
    """`sync`'s processes when `--processes` is not given: the cores, once the sync has
    `PROCESS_PER_CORE_TARGETS` targets. Those are the ones the data dir knows of the
    `targets`' sources, and those it does not: a new source, or each ACTIVE member account of
    an organization source that no sync reached yet, as its `accounts` list them: a first
    sync of a large organization is the longest it will have."""
    known = set(known_target_keys(data_dir, {target.source for target in targets}))
    expected = len(known)
    synced_sources = {target_key_source(key) for key in known}
    for target in targets:
        if target.client.organization is None:
            expected += target.key not in known
        elif target.source not in synced_sources:
            expected += _members(target, accounts)
    return processes_for(expected)


def processes_for(targets: int) -> int:
    """The cores, once a sync has `PROCESS_PER_CORE_TARGETS` targets; else one process."""
    if targets < PROCESS_PER_CORE_TARGETS:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _members(target: SourceTarget, accounts: AccountListings) -> int:
    """The accounts an organization source's target will sync (0 when they could not be
    listed: the sync says why)."""
    listed = accounts.get(target.source)
    if listed is None or isinstance(listed, ConfigError):
        return 0
    members = organization_members(target.client, listed)
    return sum(member.settings is not None for member in members)


def plan_by_cost(data_dir: DataDir, sources: Collection[str], count: int) -> dict[str, int]:
    """`plan_shards` of the targets of `sources` an earlier sync reached, each weighed by
    the images in its account's state (a call each) and its ListImages call."""
    images = known_target_images(data_dir, sources)
    return plan_shards({key: 1 + found for key, found in images.items()}, count)
