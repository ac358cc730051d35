"""How many processes a `sync` runs, and each one's share of the targets (`fanout.py`),
from what the data dir knows of them: which targets earlier syncs reached, and the images in
each one's account; and, for an organization never synced, how many accounts it has."""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Sequence

from .defaults import PROCESS_PER_CORE_TARGETS
from .errors import ConfigError
from .fanout import plan_shards
from .guard import CallGuard
from .model import target_key_source
from .run import SourceTarget
from .source import ApiStats, list_organization_accounts, organization_members
from .state import known_target_images, known_target_keys
from .storage import DataDir

__all__ = ["default_processes", "plan_by_cost"]


def default_processes(
    data_dir: DataDir, targets: Sequence[SourceTarget], stats: ApiStats, cancel: threading.Event
) -> int:
    """`sync`'s processes when `--processes` is not given: the cores, once the sync has
    `PROCESS_PER_CORE_TARGETS` targets. Those are the ones the data dir knows of the
    `targets`' sources, and those it does not: a new source, or each account of an
    organization source that no sync reached yet, whose accounts are listed here (its
    allow-list counted, else ListAccounts, counted in `stats`): a first sync of a large
    organization is the longest it will have."""
    known = set(known_target_keys(data_dir, {target.source for target in targets}))
    expected = len(known)
    synced_sources = {target_key_source(key) for key in known}
    members: dict[str, int] = {}
    for target in targets:
        if expected >= PROCESS_PER_CORE_TARGETS:
            break
        if target.client.organization is None:
            expected += target.key not in known
        elif target.source not in synced_sources:
            if target.source not in members:
                members[target.source] = _members(target, stats, cancel)
            expected += members[target.source]
    if expected < PROCESS_PER_CORE_TARGETS:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _members(target: SourceTarget, stats: ApiStats, cancel: threading.Event) -> int:
    """The accounts an organization source's target stands for: its allow-list, else its
    organization's ACTIVE accounts (0 when they cannot be listed: the sync says why)."""
    organization = target.client.organization
    assert organization is not None
    if organization.accounts:
        return len(set(organization.accounts) - set(organization.exclude))
    guard = CallGuard(target.client.call_deadline_s, cancel)
    try:
        listed = list_organization_accounts(target.client, stats, guard)
    except ConfigError:
        return 0
    members = organization_members(target.client, listed)
    return sum(member.settings is not None for member in members)


def plan_by_cost(data_dir: DataDir, sources: Collection[str], count: int) -> dict[str, int]:
    """`plan_shards` of the targets of `sources` an earlier sync reached, each weighed by
    the images in its account's state (a call each) and its ListImages call."""
    images = known_target_images(data_dir, sources)
    return plan_shards({key: 1 + found for key, found in images.items()}, count)
