"""Per-image sync state (watermarks): one Parquet file per target under `DATA/_state/targets/`.

Each target's state is written atomically, and only after the data it covers is durable, so a
watermark never moves past rows that were not committed. Each target owns its file, so syncs of
disjoint targets never write the same one. Because it is Parquet, the `sync_state` view reads
every target's file directly (by glob: a new target needs no rewrite).

Data dirs written before per-target state kept one file, `_state/images.parquet`; the first
sync that finds it splits it into the per-target files (`migrate_legacy_state`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pyarrow as pa

from .errors import DataError
from .schema import STATE_SCHEMA, table_to_rows
from .storage import DataDir, UnreadableFile

__all__ = [
    "STATE_FILES_PATTERN",
    "ImageState",
    "StateKey",
    "keep_previous_state",
    "legacy_state_file",
    "load_rate_hint",
    "load_state",
    "load_target_state",
    "local_previous_state_copies",
    "local_state_copies",
    "migrate_legacy_state",
    "previous_state_file",
    "readable_state_files",
    "save_rate_hint",
    "save_state",
    "state_file",
    "state_files",
    "target_key",
]

STATE_FILE = "images.parquet"
PREVIOUS_STATE_FILE = "images.previous.parquet"
RATE_HINT_FILE = "rate.json"
RATE_HINT_MAX_AGE_S = 24 * 3600
"""Older than this, what a sync learned of a target's API limit is not trusted any more."""
STATE_FILES_PATTERN = f"*/{STATE_FILE}"
"""The glob of every target's state file under `DataDir.targets_dir`."""

StateKey = tuple[str, str, str]
"""(source, region, image_name)."""


def target_key(source: str, region: str) -> str:
    """The name of a target's directory: `prod.us-east-1`, `org.123456789012.us-east-1`.

    Source names hold no dots, so the key reads back unambiguously."""
    return f"{source.replace('/', '.')}.{region}"


@dataclass
class ImageState:
    """What the last successful syncs established about one image."""

    source: str
    account_id: str
    region: str
    image_name: str
    image_arn: str
    watermark_ms: int | None = None
    max_version: int = 0
    last_synced_ms: int | None = None
    is_deleted: bool = False
    last_error: str | None = None
    window: dict[int, tuple[int, str]] = field(default_factory=dict)
    """version -> (last_modified_time ms, fingerprint of the stored state)."""

    @property
    def key(self) -> StateKey:
        return (self.source, self.region, self.image_name)


def state_file(data_dir: DataDir, key: str) -> PurePath:
    """One target's state file."""
    return data_dir.target_dir(key) / STATE_FILE


def previous_state_file(data_dir: DataDir, key: str) -> PurePath:
    """A target's state as its last sync found it (for the watermark-regression check)."""
    return data_dir.target_dir(key) / PREVIOUS_STATE_FILE


def legacy_state_file(data_dir: DataDir, *, previous: bool = False) -> PurePath:
    """The single state file of data dirs written before per-target state."""
    return data_dir.state_dir / (PREVIOUS_STATE_FILE if previous else STATE_FILE)


def state_files(data_dir: DataDir, *, previous: bool = False) -> list[PurePath]:
    """Every target's state file that exists (or previous state file), in target order."""
    name = previous_state_file if previous else state_file
    paths = [name(data_dir, key) for key in data_dir.target_keys()]
    return [path for path in paths if data_dir.store.is_file(path)]


def readable_state_files(data_dir: DataDir) -> list[PurePath]:
    """What readers read as the state: every target's file, or in a data dir that no sync of
    this version has touched yet, its single legacy file."""
    legacy = legacy_state_file(data_dir)
    per_target = state_files(data_dir)
    if per_target or not data_dir.store.is_file(legacy):
        return per_target
    return [legacy]


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
    """Copy a target's current state aside before a sync changes it."""
    current = state_file(data_dir, key)
    if data_dir.store.is_file(current):
        data_dir.atomic_copy(current, previous_state_file(data_dir, key))


def _read_states(data_dir: DataDir, path: PurePath) -> dict[StateKey, ImageState]:
    try:
        table = data_dir.read_checked(path, STATE_SCHEMA)
    except (OSError, UnreadableFile) as exc:
        raise DataError(
            f"state file {data_dir.store.uri(path)} is corrupt ({exc}); run "
            "`image-versions sync --full-refresh` to rebuild it from the source"
        ) from exc
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


def load_target_state(data_dir: DataDir, key: str) -> dict[StateKey, ImageState]:
    """One target's state; an empty mapping when it has none yet."""
    path = state_file(data_dir, key)
    return _read_states(data_dir, path) if data_dir.store.is_file(path) else {}


def load_state(data_dir: DataDir) -> dict[StateKey, ImageState]:
    """Every target's state (a data dir not migrated yet: its single legacy file)."""
    legacy = legacy_state_file(data_dir)
    states = _read_states(data_dir, legacy) if data_dir.store.is_file(legacy) else {}
    for path in state_files(data_dir):
        states.update(_read_states(data_dir, path))
    return states


def _by_target(states: Iterable[ImageState]) -> dict[str, list[ImageState]]:
    grouped: dict[str, list[ImageState]] = {}
    for state in states:
        grouped.setdefault(target_key(state.source, state.region), []).append(state)
    return grouped


def save_state(data_dir: DataDir, states: Mapping[StateKey, ImageState]) -> None:
    """Replace the state file of each target in `states` atomically with its states."""
    for key, mine in sorted(_by_target(states.values()).items()):
        _write_states(data_dir, state_file(data_dir, key), mine)


def _write_states(data_dir: DataDir, path: PurePath, states: list[ImageState]) -> None:
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
    data_dir.atomic_write(pa.Table.from_pylist(rows, schema=STATE_SCHEMA), path)


def migrate_legacy_state(data_dir: DataDir) -> int:
    """Split the single state file of an older data dir into per-target files; how many
    targets it held. Call it holding the dataset lock.

    Idempotent against a kill at any instant: a target's file is written (whole) only when it
    has none yet, and the old files are deleted last, so a re-run finishes the move."""
    moved = 0
    for previous in (True, False):
        legacy = legacy_state_file(data_dir, previous=previous)
        if not data_dir.store.is_file(legacy):
            continue
        name = previous_state_file if previous else state_file
        for key, mine in sorted(_by_target(_read_states(data_dir, legacy).values()).items()):
            if not data_dir.store.is_file(name(data_dir, key)):
                data_dir.store.make_dirs([data_dir.target_dir(key)])
                _write_states(data_dir, name(data_dir, key), mine)
            moved += not previous
    for previous in (True, False):
        data_dir.store.delete([legacy_state_file(data_dir, previous=previous)])
    return moved


def load_rate_hint(data_dir: DataDir, key: str) -> float | None:
    """The request rate the target's last throttled sync ended at (ratelimit.py's ssthresh),
    when it is recent; None otherwise, or when the file cannot be read."""
    path = data_dir.target_dir(key) / RATE_HINT_FILE
    try:
        if not data_dir.store.is_file(path):
            return None
        hint = json.loads(data_dir.store.read_bytes(path))
        rps, saved_at = float(hint["rps"]), float(hint["saved_at"])
    except (OSError, ValueError, TypeError, KeyError):
        return None  # a hint, never a reason to fail
    fresh = 0 <= time.time() - saved_at <= RATE_HINT_MAX_AGE_S
    return rps if fresh and rps > 0 and rps == rps else None


def save_rate_hint(data_dir: DataDir, key: str, rps: float | None) -> None:
    """Keep (or, with None, drop) the rate the target's next sync starts from."""
    path = data_dir.target_dir(key) / RATE_HINT_FILE
    if rps is None:
        data_dir.store.delete([path])
        return
    body = json.dumps({"rps": round(rps, 3), "saved_at": round(time.time(), 3)}).encode()
    data_dir.publish_bytes(body, path)
