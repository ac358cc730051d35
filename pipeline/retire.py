"""Retiring a source: what a source that left the sources file leaves behind in the data dir.

A target's own files go. An account and region that no remaining target reaches loses its
state, so `status` and the freshness check stop tracking it; its stored history stays (its
last-known versions stay in the views as they were) unless `purge` deletes its partitions too.
Call `retire` holding the whole dataset (`DataDir.exclusive`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .model import split_account_key, target_key_source
from .state import ACCOUNT_FILE, RATE_HINT_FILE, load_target_account, state_paths
from .storage import DataDir

__all__ = ["Retired", "retire"]


@dataclass
class Retired:
    """What `retire` removed: target keys, accounts whose state went, partitions deleted."""

    targets: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    partitions: int = 0


def retire(data_dir: DataDir, source: str, *, purge: bool = False) -> Retired:
    """Remove the files of every target of `source` (a region of it, or a member account of
    an organization source), and the state of each account no other target reaches.
    ConfigError, before anything is removed, when the data dir has no target of `source`."""
    keys = data_dir.target_keys()
    mine = [key for key in keys if target_key_source(key) == source]
    if not mine:
        known = sorted({target_key_source(key) for key in keys}) or ["none"]
        raise ConfigError(
            f"no target of source {source!r} in {data_dir.location} "
            f"(sources there: {', '.join(known)})"
        )
    reached = {key: load_target_account(data_dir, key) for key in keys}
    kept = {account for key, account in reached.items() if key not in mine and account}
    retired = Retired(targets=mine)
    for key in mine:
        directory = data_dir.target_dir(key)
        data_dir.store.delete([directory / ACCOUNT_FILE, directory / RATE_HINT_FILE])
    gone = {account for key in mine if (account := reached[key]) is not None} - kept
    for account in sorted(gone):
        files = [path for path in state_paths(data_dir) if path.parent.name == account]
        files.append(data_dir.account_dir(account) / RATE_HINT_FILE)
        data_dir.store.delete([path for path in files if data_dir.store.is_file(path)])
        retired.accounts.append(account)
        if purge:
            retired.partitions += _purge(data_dir, account)
    return retired


def _purge(data_dir: DataDir, account: str) -> int:
    """Delete one account and region's partitions of versions, details and catalogue."""
    account_id, region = split_account_key(account)
    deleted = 0
    for base in (data_dir.versions_dir, data_dir.details_dir, data_dir.images_dir):
        files = data_dir.store.files(data_dir.account_region_dir(base, account_id, region))
        data_dir.store.delete(files)
        deleted += bool(files)
    return deleted
