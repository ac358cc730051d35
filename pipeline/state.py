"""Per-image sync state (watermarks): one Parquet file per account and region under
`DATA/_state/accounts/`.

The state belongs to the account and region, not to the source that reached it: two sources
naming one account, or a source renamed, carry on from the same state instead of storing every
version again. An account's state is written atomically, only after the data it covers is
durable, and only by the one writer holding that account's lock. Because it is Parquet, the
`sync_state` view reads every account's file directly (by glob: a new one needs no rewrite).

Beside an account's state is the limit its syncs found of its API rate (`rate.json`): every
source that reaches the account starts from it. Each target (a source in a region) keeps its
own small file under `DATA/_state/targets/`: the account it last reached.

Older data dirs kept the state per target (`_state/targets/*/images.parquet`), or in one file
(`_state/images.parquet`); the first sync that finds either merges it into the per-account
files (`migrate_state`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath

import pyarrow as pa

from .errors import DataError
from .model import ImageState, StateKey, split_account_key, target_key_source
from .ratelimit import Learned
from .schema import STATE_SCHEMA, table_to_rows
from .storage import DataDir, UnreadableFile

__all__ = [
    "ACCOUNT_FILE",
    "RATE_HINT_FILE",
    "STATE_FILES_PATTERN",
    "drop_older_state",
    "keep_previous_state",
    "known_target_images",
    "known_target_keys",
    "legacy_state_file",
    "load_account_state",
    "load_learned_rate",
    "load_target_account",
    "local_previous_state_copies",
    "local_state_copies",
    "migrate_state",
    "needs_migration",
    "previous_state_file",
    "readable_state_files",
    "save_learned_rate",
    "save_state",
    "save_target_account",
    "saved_commit",
    "state_file",
    "state_files",
    "state_paths",
]

STATE_FILE = "images.parquet"
PREVIOUS_STATE_FILE = "images.previous.parquet"
RATE_HINT_FILE = "rate.json"
ACCOUNT_FILE = "account.json"
"""In a target's directory: the account and region its last listing reached."""
RATE_HINT_MAX_AGE_S = 7 * 24 * 3600
"""Older than this, what syncs found of an account's API limit is not trusted any more: the
next sync finds it again."""
STATE_FILES_PATTERN = f"*/{STATE_FILE}"
"""The glob of every account's state file under `DataDir.accounts_dir`."""
_COMMIT_KEY = b"image_versions.commit"
"""The state file's Parquet metadata key holding the commit its state covers."""


def state_file(data_dir: DataDir, key: str) -> PurePath:
    """One account and region's state file."""
    return data_dir.account_dir(key) / STATE_FILE


def previous_state_file(data_dir: DataDir, key: str) -> PurePath:
    """An account's state as its last sync found it (for the watermark-regression check)."""
    return data_dir.account_dir(key) / PREVIOUS_STATE_FILE


def _per_target_state_paths(data_dir: DataDir, *, previous: bool = False) -> list[PurePath]:
    """Where releases before one owner per account kept each target's state."""
    name = PREVIOUS_STATE_FILE if previous else STATE_FILE
    return [data_dir.target_dir(key) / name for key in data_dir.target_keys()]


def _per_target_state_files(data_dir: DataDir, *, previous: bool = False) -> list[PurePath]:
    """The per-target state files of releases before one owner per account."""
    paths = _per_target_state_paths(data_dir, previous=previous)
    return [path for path in paths if data_dir.store.is_file(path)]


def state_paths(data_dir: DataDir) -> list[PurePath]:
    """Every path where a state file belongs, whether or not one is there: each account's
    current and previous, and those of older releases (for the misplaced-entry check)."""
    accounts = data_dir.account_keys()
    return [
        *(state_file(data_dir, key) for key in accounts),
        *(previous_state_file(data_dir, key) for key in accounts),
        *(path for p in (False, True) for path in _per_target_state_paths(data_dir, previous=p)),
        *(legacy_state_file(data_dir, previous=p) for p in (False, True)),
    ]


def legacy_state_file(data_dir: DataDir, *, previous: bool = False) -> PurePath:
    """The single state file of data dirs written before per-target state."""
    return data_dir.state_dir / (PREVIOUS_STATE_FILE if previous else STATE_FILE)


def state_files(data_dir: DataDir, *, previous: bool = False) -> list[PurePath]:
    """Every account's state file that exists (or previous state file), in key order."""
    name = previous_state_file if previous else state_file
    paths = [name(data_dir, key) for key in data_dir.account_keys()]
    return [path for path in paths if data_dir.store.is_file(path)]


def _older_state_files(data_dir: DataDir, *, previous: bool = False) -> list[PurePath]:
    """The state files of older releases: per target, and the single legacy file."""
    legacy = legacy_state_file(data_dir, previous=previous)
    single = [legacy] if data_dir.store.is_file(legacy) else []
    return _per_target_state_files(data_dir, previous=previous) + single


def needs_migration(data_dir: DataDir) -> bool:
    """Whether an older release's state files are still there for `migrate_state`."""
    return bool(_older_state_files(data_dir) or _older_state_files(data_dir, previous=True))


def readable_state_files(data_dir: DataDir) -> list[PurePath]:
    """What readers read as the state: every account's file, or in a data dir that no sync of
    this version has touched yet, an older release's files."""
    return state_files(data_dir) or _older_state_files(data_dir)


def _local_copy(data_dir: DataDir, path: PurePath) -> Path:
    """`path` itself in a local data dir; for S3, a fresh local copy."""
    if data_dir.is_local:
        return Path(path)
    copy = data_dir.store.local_dir(data_dir.root) / path.relative_to(data_dir.root)
    copy.parent.mkdir(parents=True, exist_ok=True)
    tmp = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data_dir.store.read_bytes(path))
    os.replace(tmp, copy)
    return copy


def local_state_copies(data_dir: DataDir) -> list[Path]:
    """Every target's state file as a local path, for readers that open files by path
    (DuckDB): the files themselves in a local data dir, fresh downloads for S3."""
    return [_local_copy(data_dir, path) for path in readable_state_files(data_dir)]


def local_previous_state_copies(data_dir: DataDir) -> list[Path]:
    """Every target's previous state file as a local path, like `local_state_copies`."""
    return [_local_copy(data_dir, path) for path in state_files(data_dir, previous=True)]


def keep_previous_state(data_dir: DataDir, key: str) -> None:
    """Copy an account's current state aside before a sync changes it."""
    current = state_file(data_dir, key)
    if data_dir.store.is_file(current):
        data_dir.atomic_copy(current, previous_state_file(data_dir, key))


def _read_states(data_dir: DataDir, path: PurePath) -> dict[StateKey, ImageState]:
    try:
        table = data_dir.read_checked(path, STATE_SCHEMA)
    except (OSError, UnreadableFile) as exc:
        raise _corrupt(data_dir, path, exc) from exc
    states = {}
    for row in table_to_rows(table):
        window = {
            entry["version"]: (entry["last_modified_ms"], entry["fingerprint"])
            for entry in row.pop("window")
        }
        state = ImageState(
            source=row["source"],
            account_id=row["account_id"],
            region=row["region"],
            image_name=row["image_name"],
            image_arn=row["image_arn"],
            watermark_ms=row["watermark"],
            max_version=row["max_version"],
            last_synced_ms=row["last_synced_at"],
            is_deleted=row["is_deleted"],
            last_error=row["last_error"],
            window=window,
        )
        states[state.key] = state
    return states


def load_account_state(data_dir: DataDir, key: str) -> dict[StateKey, ImageState]:
    """One account and region's state; an empty mapping when it has none yet."""
    path = state_file(data_dir, key)
    return _read_states(data_dir, path) if data_dir.store.is_file(path) else {}


def _merged(
    parts: Iterable[Mapping[StateKey, ImageState]],
) -> dict[StateKey, ImageState]:
    """One state per image: where several files hold one (two sources that reached one
    account, before it had one owner), the one synced last, which covers the most."""
    states: dict[StateKey, ImageState] = {}
    for part in parts:
        for key, state in part.items():
            held = states.get(key)
            if held is None or _recency(state) > _recency(held):
                states[key] = state
    return states


def _recency(state: ImageState) -> tuple[int, int]:
    return (state.last_synced_ms or 0, state.watermark_ms or 0)


def _by_account(states: Iterable[ImageState]) -> dict[str, list[ImageState]]:
    grouped: dict[str, list[ImageState]] = {}
    for state in states:
        grouped.setdefault(state.account, []).append(state)
    return grouped


def save_state(
    data_dir: DataDir, states: Mapping[StateKey, ImageState], commit: str | None = None
) -> None:
    """Replace the state file of each account in `states` atomically with its states; with
    the id of the commit whose files it covers (`DataDir.publish_commit`)."""
    for key, mine in sorted(_by_account(states.values()).items()):
        _write_states(data_dir, state_file(data_dir, key), mine, commit)


def saved_commit(data_dir: DataDir, key: str) -> str | None:
    """The commit whose files an account's saved state covers; None when it records none
    (no state, or one written before commits had ids). DataError when it is unreadable."""
    path = state_file(data_dir, key)
    if not data_dir.store.is_file(path):
        return None
    try:
        metadata = data_dir.read_footer(path).metadata or {}
    except (OSError, UnreadableFile) as exc:
        raise _corrupt(data_dir, path, exc) from exc
    commit = metadata.get(_COMMIT_KEY)
    return None if commit is None else commit.decode()


def _corrupt(data_dir: DataDir, path: PurePath, exc: Exception) -> DataError:
    return DataError(
        f"state file {data_dir.store.uri(path)} is corrupt ({exc}); run "
        "`image-versions sync --full-refresh` to rebuild it from the source"
    )


def _write_states(
    data_dir: DataDir, path: PurePath, states: list[ImageState], commit: str | None = None
) -> None:
    rows = [
        {
            "source": state.source,
            "account_id": state.account_id,
            "region": state.region,
            "image_name": state.image_name,
            "image_arn": state.image_arn,
            "watermark": state.watermark_ms,
            "max_version": state.max_version,
            "last_synced_at": state.last_synced_ms,
            "is_deleted": state.is_deleted,
            "last_error": state.last_error,
            "window": [
                {"version": version, "last_modified_ms": lmt, "fingerprint": digest}
                for version, (lmt, digest) in sorted(state.window.items())
            ],
        }
        for state in sorted(states, key=lambda state: state.key)
    ]
    table = pa.Table.from_pylist(rows, schema=STATE_SCHEMA)
    if commit is not None:
        table = table.replace_schema_metadata({_COMMIT_KEY: commit.encode()})
    data_dir.atomic_write(table, path)


def migrate_state(data_dir: DataDir) -> int:
    """Merge an older release's state files (per target, or the single one) into per-account
    files; how many accounts and regions they held. Call it holding the whole dataset
    (`DataDir.exclusive`).

    Where two targets held one image (two sources reaching one account), the state synced
    last wins: it covers the most. Idempotent against a kill at any instant: every account's
    file is written whole, merged with what it holds already, and the old files are deleted
    last, so a re-run finishes the move."""
    moved = 0
    for previous in (True, False):
        older = _older_state_files(data_dir, previous=previous)
        if not older:
            continue
        name = previous_state_file if previous else state_file
        merged = _merged(_read_states(data_dir, path) for path in older)
        for key, mine in sorted(_by_account(merged.values()).items()):
            path = name(data_dir, key)
            held = _read_states(data_dir, path) if data_dir.store.is_file(path) else {}
            data_dir.store.make_dirs([data_dir.account_dir(key)])
            _write_states(data_dir, path, list(_merged([{s.key: s for s in mine}, held]).values()))
            moved += not previous
    for path in _per_target_state_files(data_dir):
        accounts = {state.account for state in _read_states(data_dir, path).values()}
        if len(accounts) == 1:  # what an empty listing of this target is about from now on
            save_target_account(data_dir, path.parent.name, accounts.pop())
    drop_older_state(data_dir)
    return moved


def drop_older_state(data_dir: DataDir) -> None:
    """Delete an older release's state files (the end of `migrate_state`, or the repair of
    a corrupt one by --full-refresh, which rebuilds from the source)."""
    for previous in (True, False):
        data_dir.store.delete(_older_state_files(data_dir, previous=previous))


def load_target_account(data_dir: DataDir, key: str) -> str | None:
    """The account and region (`account_key`) the target's last listing reached, if known:
    what a listing that names no image is about (its images may all have been deleted)."""
    path = data_dir.target_dir(key) / ACCOUNT_FILE
    try:
        if not data_dir.store.is_file(path):
            return None
        account = json.loads(data_dir.store.read_bytes(path))["account"]
    except (OSError, ValueError, TypeError, KeyError):
        return None  # as if never known: an empty listing then tombstones nothing
    return account if isinstance(account, str) and _is_account_key(account) else None


def known_target_keys(data_dir: DataDir, sources: Collection[str]) -> list[str]:
    """The keys of the targets of `sources` that earlier syncs reached."""
    return [key for key in data_dir.target_keys() if target_key_source(key) in sources]


def known_target_images(data_dir: DataDir, sources: Collection[str]) -> dict[str, int]:
    """The images (live or tombstoned) in the state of the account each target of `sources`
    reached last, by target key: what a sync of it will cost (`fanout.plan_shards`). Targets
    never synced, or whose state cannot be read, are left out."""

    def images_of(key: str) -> int | None:
        account = load_target_account(data_dir, key)
        if account is None:
            return None
        try:
            return int(data_dir.read_footer(state_file(data_dir, account)).num_rows)
        except (OSError, UnreadableFile):
            return None  # unknown: a sync of its own will say what is wrong with it

    keys = known_target_keys(data_dir, sources)
    # Side by side: two small reads a target, each a round trip when the data dir is on S3.
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = dict(zip(keys, pool.map(images_of, keys), strict=True))
    return {key: images for key, images in found.items() if images is not None}


def _is_account_key(value: str) -> bool:
    account, region = split_account_key(value)
    return account.isdigit() and len(account) == 12 and bool(region)


def save_target_account(data_dir: DataDir, key: str, account: str) -> None:
    """Remember which account and region the target reached (`load_target_account`)."""
    path = data_dir.target_dir(key) / ACCOUNT_FILE
    data_dir.publish_bytes(json.dumps({"account": account}).encode(), path)


def load_learned_rate(data_dir: DataDir, account: str) -> Learned | None:
    """The limit an account and region's last syncs found (ratelimit.py), kept beside its
    state, when it is recent; None otherwise, or when the file cannot be read."""
    path = data_dir.account_dir(account) / RATE_HINT_FILE
    try:
        if not data_dir.store.is_file(path):
            return None
        hint = json.loads(data_dir.store.read_bytes(path))
        rps, saved_at = float(hint["rps"]), float(hint["saved_at"])
        burst = None if hint.get("burst") is None else float(hint["burst"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # a hint, never a reason to fail
    fresh = 0 <= time.time() - saved_at <= RATE_HINT_MAX_AGE_S
    if not (fresh and _positive(rps) and (burst is None or _positive(burst))):
        return None
    return Learned(rps, burst)


def _positive(value: float) -> bool:
    return 0 < value < float("inf")


def save_learned_rate(data_dir: DataDir, account: str, learned: Learned | None) -> None:
    """Keep what the account's limit was found to be, for the next sync of any source that
    reaches it (nothing when nothing was found: an earlier finding stands)."""
    if learned is None:
        return
    path = data_dir.account_dir(account) / RATE_HINT_FILE
    hint = {"rps": round(learned.rps, 3), "saved_at": round(time.time(), 3)}
    if learned.burst is not None:
        hint["burst"] = round(learned.burst, 3)
    data_dir.publish_bytes(json.dumps(hint).encode(), path)
