"""The data directory: ownership, the writer lock, atomic Parquet files, partitioning, compaction.

Layout under DATA (paths marked * are part of the public contract):

    .image-versions          marker: this directory belongs to us
    .lock                    the writer lock (an OS lock: released when its process dies)
    image_versions/*         account_region=<account>.<region>/month=<YYYY-MM>/<name>.parquet
    image_version_details/*  the same layout (written only when enrichment is on)
    images/*                 account_region=<account>.<region>/images.parquet
    _state/                  watermarks (state.py) and the compaction journal
    _tmp/                    files being written; renamed into place once durable
    warehouse.duckdb*        views (warehouse.py)

Only complete Parquet files ever appear under the dataset directories: each is written
to `_tmp/`, fsynced, then renamed into place (rename is atomic within one filesystem).
The Hive keys are deliberately not named like columns: `account_id` as a key would be read
back as an integer (losing leading zeros), and a `region` key would clash with the column.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .errors import ConfigError, DataError
from .schema import IMAGE_SCHEMA, IMAGE_VERSION_DETAILS_SCHEMA, IMAGE_VERSION_SCHEMA

log = logging.getLogger(__name__)
MARKER = ".image-versions"
MARKER_TEXT = "This directory is an image-versions dataset. See the project's README.\n"
PARQUET_COMPRESSION = "zstd"
# A partition holding more files than this is compacted at the end of a sync.
AUTO_COMPACT_FILES = 16
ROW_ORDER = [("image_name", "ascending"), ("version", "ascending"), ("observed_at", "ascending")]
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create `path` and its missing parents, making each new directory entry durable."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_dir(directory.parent)


def _partition_key(value: str) -> str:
    # Values reach here validated (schema.arn_account_region); this guards the path itself.
    if not _SAFE_KEY.match(value):
        raise ValueError(f"refusing to use {value!r} in a partition path")
    return value


class _Journal(TypedDict):
    new: str
    old: list[str]


@dataclass(frozen=True)
class DataDir:
    """A dataset directory and the paths inside it."""

    root: Path

    @property
    def versions_dir(self) -> Path:
        return self.root / "image_versions"

    @property
    def details_dir(self) -> Path:
        return self.root / "image_version_details"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def state_dir(self) -> Path:
        return self.root / "_state"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "_tmp"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "compaction.json"

    def is_ours(self) -> bool:
        return (self.root / MARKER).is_file()

    def check_ours(self) -> None:
        """Refuse (ConfigError) a directory that exists and is not an image-versions dataset."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise ConfigError(f"data dir {root} is a file, not a directory; choose another path")
        if root.is_dir() and not self.is_ours() and any(root.iterdir()):
            raise ConfigError(
                f"data dir {root} is not empty and was not created by image-versions "
                f"(no {MARKER} marker); choose an empty or new directory"
            )

    def prepare(self) -> None:
        """Create the directory layout (idempotent) after checking the directory is ours."""
        self.check_ours()
        try:
            _make_dirs(self.root)
            marker = self.root / MARKER
            if not marker.exists():
                marker.write_text(MARKER_TEXT)
            for directory in (self.versions_dir, self.images_dir, self.state_dir, self.tmp_dir):
                _make_dirs(directory)
            probe = self.tmp_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except PermissionError as exc:
            raise ConfigError(f"data dir {self.root} is not writable: {exc.strerror}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot create data dir {self.root}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def writer_lock(self, timeout_s: float = 0) -> Iterator[None]:
        """Hold the dataset's writer lock; ConfigError if another writer holds it."""
        lock = FileLock(self.root / ".lock", timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout as exc:
            raise ConfigError(
                f"another image-versions process is writing to {self.root}; "
                "wait for it to finish and run again"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def clean_tmp(self) -> None:
        """Remove leftovers of writes that a killed process never finished."""
        if self.tmp_dir.is_dir():
            for leftover in self.tmp_dir.iterdir():
                leftover.unlink(missing_ok=True)

    def atomic_write(self, table: pa.Table, final_path: Path) -> Path:
        """Write `table` to `final_path` so that it appears complete or not at all."""
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
        return self._publish(tmp, final_path)

    def _publish(self, tmp: Path, final_path: Path) -> Path:
        """Make a finished temp file durable, then rename it into place."""
        _make_dirs(final_path.parent)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final_path)
        _fsync_dir(final_path.parent)
        return final_path

    def atomic_copy(self, source: Path, final_path: Path) -> Path:
        """Copy a file so that the copy appears complete or not at all."""
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        shutil.copyfile(source, tmp)
        return self._publish(tmp, final_path)

    def write_versions(self, table: pa.Table) -> list[Path]:
        """Write version rows as one new file per (account, region, month) partition."""
        return self._write_monthly(table, IMAGE_VERSION_SCHEMA, self.versions_dir)

    def write_details(self, table: pa.Table) -> list[Path]:
        """Write details rows as one new file per (account, region, month) partition."""
        return self._write_monthly(table, IMAGE_VERSION_DETAILS_SCHEMA, self.details_dir)

    def _write_monthly(self, table: pa.Table, schema: pa.Schema, base: Path) -> list[Path]:
        if table.num_rows == 0:
            return []
        table = table.select(schema.names).cast(schema)
        months = pc.strftime(table.column("last_modified_time"), format="%Y-%m")
        # One sort puts each partition's rows together, already in file order; each
        # partition is then a slice (filtering per partition would rescan every row).
        partition_order = [(name, "ascending") for name in ("account_id", "region", "_month")]
        keyed = table.append_column("_month", months).sort_by(partition_order + ROW_ORDER)
        runs = (
            keyed.group_by(["account_id", "region", "_month"])
            .aggregate([([], "count_all")])
            .sort_by(partition_order)
        )
        written, offset = [], 0
        for account, region, month, count in zip(
            *(runs.column(name).to_pylist() for name in ("account_id", "region", "_month")),
            runs.column("count_all").to_pylist(),
            strict=True,
        ):
            part = keyed.slice(offset, count).drop_columns(["_month"])
            offset += count
            directory = self._month_partition(base, account, region, month)
            written.append(self.atomic_write(part, directory / f"part-{uuid.uuid4().hex}.parquet"))
        return written

    def version_partition(self, account: str, region: str, month: str) -> Path:
        return self._month_partition(self.versions_dir, account, region, month)

    @staticmethod
    def _month_partition(base: Path, account: str, region: str, month: str) -> Path:
        key = f"{_partition_key(account)}.{_partition_key(region)}"
        return base / f"account_region={key}" / f"month={_partition_key(month)}"

    def write_images(self, account: str, region: str, table: pa.Table) -> Path:
        """Replace the catalogue snapshot of one account and region."""
        key = f"{_partition_key(account)}.{_partition_key(region)}"
        final = self.images_dir / f"account_region={key}" / "images.parquet"
        return self.atomic_write(table.cast(IMAGE_SCHEMA), final)

    def version_files(self) -> list[Path]:
        return sorted(self.versions_dir.glob("*/*/*.parquet"))

    def details_files(self) -> list[Path]:
        return sorted(self.details_dir.glob("*/*/*.parquet"))

    def image_files(self) -> list[Path]:
        return sorted(self.images_dir.glob("*/*.parquet"))

    def compact(self, min_files: int = 2) -> tuple[int, int]:
        """Merge each partition (of versions and of details) holding at least `min_files` files
        into one file.

        Rows are kept as they are (the views already collapse repeated states), so every view
        returns the same rows before and after. A journal in `_state/` makes the swap of old
        files for the merged one safe against a kill at any instant. Returns (files before,
        files after).
        """
        self.recover_compaction()
        datasets = (
            (self.version_files, IMAGE_VERSION_SCHEMA),
            (self.details_files, IMAGE_VERSION_DETAILS_SCHEMA),
        )
        before = after = 0
        for list_files, schema in datasets:
            files_before = list_files()
            partitions: dict[Path, list[Path]] = {}
            for path in files_before:
                partitions.setdefault(path.parent, []).append(path)
            for directory, files in sorted(partitions.items()):
                if len(files) >= min_files:
                    self._merge_partition(directory, files, schema)
            before, after = before + len(files_before), after + len(list_files())
        return before, after

    def _merge_partition(self, directory: Path, files: list[Path], schema: pa.Schema) -> None:
        log.info("compacting %d files in %s", len(files), directory.relative_to(self.root))
        merged = pq.read_table(files, schema=schema)
        merged = merged.sort_by(ROW_ORDER)
        target = directory / f"compacted-{uuid.uuid4().hex}.parquet"
        journal: _Journal = {
            "new": str(target.relative_to(self.root)),
            "old": [str(path.relative_to(self.root)) for path in files],
        }
        self._write_journal(journal)
        self.atomic_write(merged, target)
        self._finish_journal(journal)

    def _write_journal(self, journal: _Journal) -> None:
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.journal"
        tmp.write_text(json.dumps(journal))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.journal_path)
        _fsync_dir(self.state_dir)

    def _finish_journal(self, journal: _Journal) -> None:
        new = self.root / journal["new"]
        if new.exists():
            for name in journal["old"]:
                (self.root / name).unlink(missing_ok=True)
            _fsync_dir(new.parent)
        self.journal_path.unlink(missing_ok=True)
        _fsync_dir(self.state_dir)

    def recover_compaction(self) -> None:
        """Finish (or drop) a compaction that a killed process left half done."""
        if not self.journal_path.exists():
            return
        try:
            journal = json.loads(self.journal_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"compaction journal {self.journal_path} is unreadable: {exc}") from exc
        self._finish_journal(journal)
