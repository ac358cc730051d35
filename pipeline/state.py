"""Per-image sync state (watermarks), stored as one Parquet file under `DATA/_state/`.

The state is written atomically, and only after the data it covers is durable, so a watermark
never moves past rows that were not committed. Because it is Parquet, the `sync_state` view
reads it directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pyarrow as pa

from .errors import DataError
from .schema import STATE_SCHEMA, table_to_rows
from .storage import DataDir

__all__ = [
    "ImageState",
    "StateKey",
    "keep_previous_state",
    "load_state",
    "local_previous_state_copy",
    "local_state_copy",
    "previous_state_file",
    "save_state",
    "state_file",
]

STATE_FILE = "images.parquet"
PREVIOUS_STATE_FILE = "images.previous.parquet"

StateKey = tuple[str, str, str]
"""(source, region, image_name)."""


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


def state_file(data_dir: DataDir) -> PurePath:
    return data_dir.state_dir / STATE_FILE


def previous_state_file(data_dir: DataDir) -> PurePath:
    """The state as the last sync found it (for the watermark-regression check)."""
    return data_dir.state_dir / PREVIOUS_STATE_FILE


def _local_copy(data_dir: DataDir, path: PurePath) -> Path:
    """`path` itself in a local data dir; for S3, a fresh local copy (absent if it is)."""
    if data_dir.is_local:
        return Path(path)
    copy = data_dir.store.local_dir(data_dir.root) / path.relative_to(data_dir.root)
    copy.parent.mkdir(parents=True, exist_ok=True)
    if not data_dir.store.is_file(path):
        copy.unlink(missing_ok=True)
        return copy
    tmp = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data_dir.store.read_bytes(path))
    os.replace(tmp, copy)
    return copy


def local_state_copy(data_dir: DataDir) -> Path:
    """The state file as a local path, for readers that open it by path (DuckDB): the file
    itself in a local data dir, a fresh download of it for S3."""
    return _local_copy(data_dir, state_file(data_dir))


def local_previous_state_copy(data_dir: DataDir) -> Path:
    """The previous state file as a local path (downloaded for S3), like `local_state_copy`."""
    return _local_copy(data_dir, previous_state_file(data_dir))


def keep_previous_state(data_dir: DataDir) -> None:
    """Copy the current state aside before a sync changes it."""
    current = state_file(data_dir)
    if data_dir.store.is_file(current):
        data_dir.atomic_copy(current, previous_state_file(data_dir))


def load_state(data_dir: DataDir) -> dict[StateKey, ImageState]:
    """Read the state file; an empty mapping when there is none yet."""
    path = state_file(data_dir)
    if not data_dir.store.is_file(path):
        return {}
    try:
        table = data_dir.read_table([path], schema=STATE_SCHEMA)
    except (OSError, pa.ArrowException) as exc:
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


def save_state(data_dir: DataDir, states: Mapping[StateKey, ImageState]) -> None:
    """Replace the state file atomically with `states`."""
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
        for _, state in sorted(states.items())
    ]
    data_dir.atomic_write(pa.Table.from_pylist(rows, schema=STATE_SCHEMA), state_file(data_dir))
