"""The data directory: ownership, the writer lock, atomic Parquet files, partitioning, compaction.

Layout under DATA, a local directory or `s3://bucket/prefix` (paths marked * are public):

    .image-versions          marker: this directory belongs to us
    .lock                    the writer lock (backends.py: an OS lock, or an S3 lease)
    image_versions/*         account_region=<account>.<region>/month=<YYYY-MM>/<name>.parquet
    images/*                 account_region=<account>.<region>/images.parquet
    image_version_details/*  the same layout as image_versions (written only when enriching)
    sync_runs/*              target=<target>/month=<YYYY-MM>/<name>.parquet: a row per target
                             per sync
    _state/accounts/<key>/   one account and region's watermarks (state.py), its lock, and the
                             journals of its unfinished compaction and commit; <key> is
                             `<account>.<region>`
    _state/targets/<target>/ one target's writer lock and the account it reached; <target> is
                             `<source>.<region>`, with an organization member's source
                             `org/123456789012` as `org.123456789012`
    _tmp/<target>/           local only: a target's files being written; renamed into place
                             once durable
    warehouse.duckdb*        views (warehouse.py); for S3, in a local cache directory

Each target (a source and region) has its own writer lock and writes only its own account and
region's partitions, so syncs of disjoint targets run side by side, in one process or several.
Operations on the whole dataset (`compact`, `verify --repair`) hold the dataset lock `.lock`
and every target's lock.

Only complete Parquet files ever appear under `image_versions/`, `images/` and
`image_version_details/` (how each store guarantees it: backends.py). The Hive keys are
deliberately not named like columns: `account_id` as a key would be read back as an integer
(losing leading zeros), and a `region` key would clash with the column.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, TypedDict, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .backends import S3_SCHEME, LocalStore, S3Store, Store, parse_s3_uri
from .errors import ConfigError, DataError, ImageVersionsError, WriterBusy, one_line
from .evolution import read_file
from .guard import Cancelled
from .schema import (
    IMAGE_SCHEMA,
    IMAGE_VERSION_DETAILS_SCHEMA,
    IMAGE_VERSION_SCHEMA,
    SYNC_RUNS_SCHEMA,
)

__all__ = ["AUTO_COMPACT_FILES", "DataDir", "UnreadableFile"]

log = logging.getLogger(__name__)
MARKER = ".image-versions"
MARKER_TEXT = "This directory is an image-versions dataset. See the project's README.\n"
PARQUET_COMPRESSION = "zstd"
AUTO_COMPACT_FILES = 16  # a partition holding more files is compacted at a sync's end
ROW_ORDER = [("image_name", "ascending"), ("version", "ascending"), ("observed_at", "ascending")]
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
LOCAL = LocalStore()
LOCK_POLL_S = 0.2  # how often a writer waiting for a target's lock looks for a cancellation


def _partition_key(value: str) -> str:
    # Values reach here validated (schema.arn_account_region); this guards the path itself.
    if not _SAFE_KEY.match(value):
        raise ValueError(f"refusing to use {value!r} in a partition path")
    return value


def _allow_open_files(wanted: int) -> None:
    """Raise this process's limit of open files towards `wanted`, as far as the hard limit
    lets it (a large organisation's every target lock is held at once)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _distinct_rows(table: pa.Table) -> pa.Table:
    """`table` without rows that repeat another in every column: copies that no view can tell
    apart (two compactions of one partition at once, a file copied by hand), which would
    otherwise be merged and copied again. Tables with nested columns (details) are kept as
    they are: Arrow cannot group by them, and their copies are bounded by one owner."""
    if any(pa.types.is_nested(field.type) for field in table.schema):
        return table
    return table.group_by(table.schema.names, use_threads=False).aggregate([]).cast(table.schema)


class UnreadableFile(ImageVersionsError):
    """A dataset file that cannot be read back with the schema it should hold."""


class _Journal(TypedDict):
    new: str
    old: list[str]


class _CommitJournal(TypedDict):
    commit: str
    files: list[str]


@dataclass(frozen=True)
class DataDir:
    """A dataset and the paths inside it, in a local directory or an S3 prefix.

    `root` is a local path (a `Path`), or `bucket/prefix` with an `S3Store`; every file
    operation goes through `store`, so the logic here is one code path for both.
    """

    root: PurePath
    store: Store = field(default=LOCAL)
    scope: str | None = None
    """Set (`for_target`, `for_account`): `targets/KEY` or `accounts/KEY`, the one writer
    whose temporary files and compaction journal these are."""

    @classmethod
    def at(cls, location: str) -> DataDir:
        """The dataset at a local path or at `s3://bucket/prefix`."""
        if location.startswith(S3_SCHEME):
            return cls(parse_s3_uri(location), S3Store.from_env())
        return cls(Path(location).expanduser())

    @property
    def location(self) -> str:
        """How the user names it: the local path, or `s3://bucket/prefix`."""
        return self.store.uri(self.root)

    @property
    def is_local(self) -> bool:
        return isinstance(self.store, LocalStore)

    @property
    def versions_dir(self) -> PurePath:
        return self.root / "image_versions"

    @property
    def details_dir(self) -> PurePath:
        return self.root / "image_version_details"

    @property
    def images_dir(self) -> PurePath:
        return self.root / "images"

    @property
    def sync_runs_dir(self) -> PurePath:
        return self.root / "sync_runs"

    def sync_runs_partition(self, key: str) -> PurePath:
        """The partition of one target's sync history."""
        return self.sync_runs_dir / f"target={_partition_key(key)}"

    @property
    def state_dir(self) -> PurePath:
        return self.root / "_state"

    @property
    def tmp_dir(self) -> PurePath:
        """Where files are written before they are renamed into place; each target has its
        own, so that a target cleaning its leftovers never touches another's files."""
        tmp = self.root / "_tmp"
        return tmp if self.scope is None else tmp / self.scope

    @property
    def targets_dir(self) -> PurePath:
        return self.state_dir / "targets"

    @property
    def accounts_dir(self) -> PurePath:
        return self.state_dir / "accounts"

    def target_dir(self, key: str) -> PurePath:
        """The directory of one target's lock, rate hint and account (a source in a region)."""
        return self.targets_dir / _partition_key(key)

    def account_dir(self, key: str) -> PurePath:
        """The directory of one account and region's state, lock and compaction journal: what
        its one owner at a time writes, whichever source reached it."""
        return self.accounts_dir / _partition_key(key)

    def target_keys(self) -> list[str]:
        """Every target with a directory of its own, in order."""
        return self._keys(self.targets_dir)

    def account_keys(self) -> list[str]:
        """Every account and region with a directory of its own, in order."""
        return self._keys(self.accounts_dir)

    def _keys(self, directory: PurePath) -> list[str]:
        return sorted(
            path.name for path in self.store.subdirs(directory) if _SAFE_KEY.match(path.name)
        )

    def for_target(self, key: str) -> DataDir:
        """This dataset as one target's writer sees it: its own temporary files and journal."""
        return DataDir(self.root, self.store, f"{self.targets_dir.name}/{_partition_key(key)}")

    def for_account(self, key: str) -> DataDir:
        """This dataset as the owner of one account and region sees it."""
        return DataDir(self.root, self.store, f"{self.accounts_dir.name}/{_partition_key(key)}")

    @property
    def warehouse_path(self) -> Path:
        return self.store.local_dir(self.root) / "warehouse.duckdb"

    @property
    def journal_path(self) -> PurePath:
        return self._scoped_state / "compaction.json"

    @property
    def commit_journal_path(self) -> PurePath:
        """The files of the commit under way of an account (`publish_commit`)."""
        return self._scoped_state / "commit.json"

    @property
    def _scoped_state(self) -> PurePath:
        return self.state_dir if self.scope is None else self.state_dir / self.scope

    def journal_paths(self) -> list[PurePath]:
        """Every compaction journal in the dataset: the dataset's own, each account's, and
        each target's (where releases before one owner per account kept theirs)."""
        every = [self.for_account(key) for key in self.account_keys()]
        every += [self.for_target(key) for key in self.target_keys()]
        return [d.journal_path for d in (DataDir(self.root, self.store), *every)]

    def commit_journal_paths(self) -> list[PurePath]:
        """Where each account's journal of an unfinished commit would be."""
        return [self.for_account(key).commit_journal_path for key in self.account_keys()]

    def is_ours(self) -> bool:
        return self.store.is_file(self.root / MARKER)

    def check_ours(self) -> None:
        """Refuse (ConfigError) a directory that exists and is not an image-versions dataset,
        or that holds a symbolic link."""
        self.store.check_reachable(self.root)
        if self.store.is_file(self.root):
            raise ConfigError(
                f"data dir {self.location} is a file, not a directory; choose another path"
            )
        if self.store.has_entries(self.root) and not self.is_ours():
            raise ConfigError(
                f"data dir {self.location} is not empty and was not created by image-versions "
                f"(no {MARKER} marker); choose an empty or new directory"
            )
        self.refuse_symlinks()

    def refuse_symlinks(self) -> None:
        """ConfigError naming the first symbolic link inside the data dir.

        Every command calls this before it touches the dataset: a link would let a write, a
        delete or a DuckDB glob reach outside the data dir. The root itself may be a link.
        """
        link = self.store.first_symlink(self.root)
        if link is not None:
            raise ConfigError(
                f"{link} in data dir {self.location} is a symbolic link, and image-versions "
                "never follows links inside its data dir; remove the link (move what it points "
                "at into its place if you need it) and run again"
            )

    @property
    def layout_dirs(self) -> tuple[PurePath, ...]:
        """The directories every sync writes into."""
        return (self.versions_dir, self.images_dir, self.state_dir, self.tmp_dir)

    def files_in_layout(self) -> list[PurePath]:
        """Files where the layout has a directory: every write under them would fail."""
        directories = (*self.layout_dirs, self.details_dir)
        return [directory for directory in directories if self.store.is_file(directory)]

    def prepare(self) -> None:
        """Create the directory layout (idempotent) after checking the directory is ours."""
        self.check_ours()
        try:
            self.store.make_dirs([self.root])
            if not self.is_ours():
                self.store.touch(self.root / MARKER, MARKER_TEXT.encode())
            self.store.make_dirs(self.layout_dirs)
        except PermissionError as exc:
            raise ConfigError(f"data dir {self.location} is not writable: {exc.strerror}") from exc
        except OSError as exc:
            reason = exc.strerror or exc
            raise ConfigError(f"cannot create data dir {self.location}: {reason}") from exc
        self.check_writable()

    def check_writable(self) -> None:
        """ConfigError (one line) unless a writer can write where it has to.

        A writer would otherwise stop half way with an OSError (exit 1): a read-only mount or
        directory, or a file where the layout has a directory (which fails for root too).
        """
        misplaced = self.files_in_layout()
        if misplaced:
            raise DataError(
                f"{misplaced[0].relative_to(self.root)} in data dir {self.location} is a file "
                "where a directory belongs; run `image-versions verify --repair` to move it aside"
            )
        try:
            self.store.check_writable([self.root, *self.layout_dirs], self.tmp_dir)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise ConfigError(
                f"data dir {self.location} is not writable: {exc.strerror or exc}{where}"
            ) from exc

    def writer_lock(self, timeout_s: float = 0) -> contextlib.AbstractContextManager[None]:
        """Hold the dataset lock; ConfigError if another process holds it.

        Alone it guards what belongs to no target (the move to per-target state); with
        `every_target_lock` it stands for the whole dataset."""
        return self.store.lock(self.root, timeout_s)

    def target_lock(
        self, key: str, timeout_s: float = 0, cancel: threading.Event | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold one target's writer lock, waiting up to `timeout_s` for another writer of it;
        WriterBusy after that, Cancelled as soon as `cancel` is set."""
        return self._lock_in(self.target_dir(key), timeout_s, cancel)

    def account_lock(
        self, key: str, timeout_s: float = 0, cancel: threading.Event | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold one account and region's lock, as `target_lock`: the one owner that writes its
        partitions, state and compactions, whichever source reached it."""
        return self._lock_in(self.account_dir(key), timeout_s, cancel)

    @contextlib.contextmanager
    def _lock_in(
        self, directory: PurePath, timeout_s: float, cancel: threading.Event | None
    ) -> Iterator[None]:
        self.store.make_dirs([directory])
        deadline = time.monotonic() + timeout_s
        with contextlib.ExitStack() as held:
            while True:
                step = min(LOCK_POLL_S, max(0.0, deadline - time.monotonic()))
                try:
                    held.enter_context(self.store.lock(directory, step))
                    break
                except WriterBusy:
                    if time.monotonic() >= deadline:
                        raise
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
            yield

    @contextlib.contextmanager
    def exclusive(self, timeout_s: float = 0) -> Iterator[None]:
        """The whole dataset: the dataset lock, then every target's, then every account's, in
        order (a sync takes its target's before its account's, so no two holders deadlock).
        An account that first appears meanwhile writes only its own new partitions, which
        nothing holding this touches."""
        targets, accounts = self.target_keys(), self.account_keys()
        _allow_open_files(len(targets) + len(accounts) + 256)  # one open lock file each
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.writer_lock(timeout_s))
            for key in targets:
                stack.enter_context(self.target_lock(key, timeout_s))
            for key in accounts:
                stack.enter_context(self.account_lock(key, timeout_s))
            self.clean_tmp()  # every target's leftovers, and those of whole-dataset writes
            yield

    def clean_tmp(self) -> None:
        """Remove leftovers of writes that a killed process never finished."""
        self.store.delete(self.store.files(self.tmp_dir))

    def atomic_write(self, table: pa.Table, final_path: PurePath) -> PurePath:
        """Write `table` to `final_path` so that it appears complete or not at all."""

        def write(sink: pa.NativeFile) -> None:
            pq.write_table(table, sink, compression=PARQUET_COMPRESSION)

        self.store.publish(final_path, write, self.tmp_dir)
        return final_path

    def publish_bytes(self, data: bytes, final_path: PurePath) -> None:
        """Write `data` to `final_path` so that it appears complete or not at all."""

        def write(sink: pa.NativeFile) -> None:
            sink.write(data)

        self.store.publish(final_path, write, self.tmp_dir)

    def atomic_copy(self, source: PurePath, final_path: PurePath) -> PurePath:
        """Copy a file so that the copy appears complete or not at all."""
        self.publish_bytes(self.store.read_bytes(source), final_path)
        return final_path

    def write_versions(self, table: pa.Table) -> list[PurePath]:
        """Write version rows as one new file per (account, region, month) partition."""
        return self._write_parts(self._version_parts(table))

    def write_details(self, table: pa.Table) -> list[PurePath]:
        """Write details rows as one new file per (account, region, month) partition."""
        return self._write_parts(self._details_parts(table))

    def publish_commit(self, commit: str, versions: pa.Table, details: pa.Table) -> list[PurePath]:
        """Write one commit's version and details rows as new files per partition, named
        first in the account's commit journal.

        A process killed after the files appear and before the state that covers them is
        saved leaves that journal behind: positive evidence of which files no state covers,
        for `roll_back_commit` to delete before a re-run lists the same rows again
        (invariant 14). `end_commit` drops the journal once the state is saved."""
        parts = self._version_parts(versions) + self._details_parts(details)
        journal: _CommitJournal = {
            "commit": commit,
            "files": [str(path.relative_to(self.root)) for path, _ in parts],
        }
        self.publish_bytes(json.dumps(journal).encode(), self.commit_journal_path)
        return self._write_parts(parts)

    def end_commit(self) -> None:
        """The state covering the commit's files is saved: its journal is not needed."""
        self.store.delete([self.commit_journal_path])

    def roll_back_commit(self, committed: str | None) -> int:
        """Delete the files of an unfinished commit, unless `committed` (the commit the
        account's saved state records) is that commit; then drop its journal. Returns how
        many files it deleted. DataError when the journal is unreadable or names files
        outside the partitions."""
        path = self.commit_journal_path
        if not self.store.is_file(path):
            return 0
        journal = self._read_journal(path)
        named = [] if journal["commit"] == committed else journal["files"]
        files = [self.root / name for name in named if self.store.is_file(self.root / name)]
        self.store.delete(files)
        self.store.delete([path])
        return len(files)

    def _version_parts(self, table: pa.Table) -> list[tuple[PurePath, pa.Table]]:
        return self._monthly_parts(table, IMAGE_VERSION_SCHEMA, self.versions_dir)

    def _details_parts(self, table: pa.Table) -> list[tuple[PurePath, pa.Table]]:
        return self._monthly_parts(table, IMAGE_VERSION_DETAILS_SCHEMA, self.details_dir)

    def _monthly_parts(
        self, table: pa.Table, schema: pa.Schema, base: PurePath
    ) -> list[tuple[PurePath, pa.Table]]:
        """Each (account, region, month) partition's rows of `table` and the new file under
        `base` they go to."""
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
        parts, offset = [], 0
        for account, region, month, count in zip(
            *(runs.column(name).to_pylist() for name in ("account_id", "region", "_month")),
            runs.column("count_all").to_pylist(),
            strict=True,
        ):
            part = keyed.slice(offset, count).drop_columns(["_month"])
            offset += count
            directory = self._month_partition(base, account, region, month)
            parts.append((directory / f"part-{uuid.uuid4().hex}.parquet", part))
        return parts

    def _write_parts(self, parts: list[tuple[PurePath, pa.Table]]) -> list[PurePath]:
        return [self.atomic_write(part, path) for path, part in parts]

    @staticmethod
    def account_region_dir(base: PurePath, account: str, region: str) -> PurePath:
        """The partition of one account and region under `base` (versions, details, images)."""
        return base / f"account_region={_partition_key(account)}.{_partition_key(region)}"

    @classmethod
    def _month_partition(cls, base: PurePath, account: str, region: str, month: str) -> PurePath:
        return cls.account_region_dir(base, account, region) / f"month={_partition_key(month)}"

    def images_file(self, account: str, region: str) -> PurePath:
        """The catalogue snapshot of one account and region (`write_images` replaces it)."""
        return self.account_region_dir(self.images_dir, account, region) / "images.parquet"

    def write_images(self, account: str, region: str, table: pa.Table) -> PurePath:
        return self.atomic_write(table.cast(IMAGE_SCHEMA), self.images_file(account, region))

    @staticmethod
    def files_pattern(base: PurePath) -> str:
        """The glob of the Parquet files under `base`, relative to it: partitions by account
        and region (by target for sync history), and but for images by month too."""
        return "*/*.parquet" if base.name == "images" else "*/*/*.parquet"

    MONTH_FILES = "*/*.parquet"  # the Parquet files under one account_region= partition

    def local_glob(self, directory: PurePath, pattern: str) -> str:
        """`pattern` under `directory` as an absolute local path, for DuckDB's read_parquet
        (a local data dir only; links under the data dir are refused before any reader)."""
        relative = directory.relative_to(self.root)
        return str(self.store.local_dir(self.root).resolve() / relative / pattern)

    def write_sync_run(self, key: str, table: pa.Table) -> PurePath:
        """Add one target's sync history rows as a new file of its partition."""
        month = table.column("started_at")[0].as_py().strftime("%Y-%m")
        directory = self.sync_runs_partition(key) / f"month={_partition_key(month)}"
        final = directory / f"run-{uuid.uuid4().hex}.parquet"
        return self.atomic_write(table.cast(SYNC_RUNS_SCHEMA), final)

    def sync_run_files(self) -> list[PurePath]:
        return self.store.glob(self.sync_runs_dir, self.files_pattern(self.sync_runs_dir))

    def version_files(self) -> list[PurePath]:
        return self.store.glob(self.versions_dir, self.files_pattern(self.versions_dir))

    def details_files(self) -> list[PurePath]:
        return self.store.glob(self.details_dir, self.files_pattern(self.details_dir))

    def image_files(self) -> list[PurePath]:
        return self.store.glob(self.images_dir, self.files_pattern(self.images_dir))

    def compact(
        self, min_files: int = 2, owners: Iterable[PurePath] | None = None
    ) -> tuple[int, int]:
        """Merge each partition (of versions, details and sync history) holding at least
        `min_files` files into one file; only those under `owners` when given (a sync compacts
        the account_region= and target= partitions it wrote to, listing nothing else).

        Rows are kept as they are (the views already collapse repeated states), so every view
        returns the same rows before and after. A journal makes the swap of old files for the
        merged one safe against a kill at any instant. Returns (files before, files after).
        DataError, before anything is deleted, when a file cannot be merged. The whole
        dataset's compaction first refuses links (ConfigError) and a broken layout; a sync has
        checked both before it compacts its own.
        """
        schemas = {
            self.versions_dir: IMAGE_VERSION_SCHEMA,
            self.details_dir: IMAGE_VERSION_DETAILS_SCHEMA,
            self.sync_runs_dir: SYNC_RUNS_SCHEMA,
        }
        if owners is None:
            self.refuse_symlinks()
            self.check_writable()
            self.recover_compaction(every=True)
            listings = [(base, self.files_pattern(base)) for base in schemas]
        else:
            listings = [(owner, self.MONTH_FILES) for owner in sorted(set(owners))]
        before = after = 0
        for directory, pattern in listings:
            schema = schemas[directory if owners is None else directory.parent]
            files_before = self.store.glob(directory, pattern)
            partitions: dict[PurePath, list[PurePath]] = {}
            for path in files_before:
                partitions.setdefault(path.parent, []).append(path)
            for partition, files in sorted(partitions.items()):
                if len(files) >= min_files:
                    self._merge_partition(partition, files, schema)
            before += len(files_before)
            after += len(self.store.glob(directory, pattern))
        return before, after

    def read_checked(
        self, path: PurePath, schema: pa.Schema, columns: list[str] | None = None
    ) -> pa.Table:
        """`columns` (all when None) of one Parquet file of this dataset, which must hold
        `schema` (or an earlier release's form of it: evolution.py); UnreadableFile (why, on
        one line) when it cannot be read or holds something else.

        One file, not `pq.read_table`: that goes through pyarrow.dataset, whose import pulls
        in pandas (a quarter of a second of every sync's start-up)."""
        with self._opened(path) as parquet:
            table = read_file(parquet, schema, columns)
        if table is None:
            raise UnreadableFile(f"unexpected schema: {parquet.schema_arrow.names}")
        return table

    def read_footer(self, path: PurePath) -> pq.FileMetaData:
        """The footer of one Parquet file of this dataset (its rows, its key-value metadata),
        nothing else read; UnreadableFile when it cannot be read."""
        with self._opened(path) as parquet:
            return parquet.metadata

    @contextlib.contextmanager
    def _opened(self, path: PurePath) -> Iterator[pq.ParquetFile]:
        """One Parquet file of this dataset, open for reading; what fails to read it inside
        becomes UnreadableFile (why, on one line). FileNotFoundError passes through."""
        try:
            with self.store.filesystem.open_input_file(str(path)) as source:
                yield pq.ParquetFile(source)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(one_line(str(exc))) from exc

    def _merge_partition(
        self, directory: PurePath, files: list[PurePath], schema: pa.Schema
    ) -> None:
        log.info("compacting %d files in %s", len(files), directory.relative_to(self.root))
        # File by file, not one multi-file read: a foreign file would otherwise be cast into
        # the schema (its missing columns read as nulls) and then deleted with the others.
        tables = []
        for path in files:
            try:
                tables.append(self.read_checked(path, schema))
            except FileNotFoundError:
                # Two sources naming one account and region may compact the same partition;
                # the one that deleted this file merged it already.
                log.info("%s was compacted meanwhile", path.relative_to(self.root))
                return
            except UnreadableFile as exc:
                raise DataError(
                    f"{path.relative_to(self.root)} in {self.location} cannot be compacted "
                    f"({exc}); run `image-versions verify --repair` to move it aside"
                ) from exc
        order = ROW_ORDER if schema is not SYNC_RUNS_SCHEMA else [("started_at", "ascending")]
        merged = _distinct_rows(pa.concat_tables(tables)).sort_by(order)
        target = directory / f"compacted-{uuid.uuid4().hex}.parquet"
        journal: _Journal = {
            "new": str(target.relative_to(self.root)),
            "old": [str(path.relative_to(self.root)) for path in files],
        }
        self.publish_bytes(json.dumps(journal).encode(), self.journal_path)
        self.atomic_write(merged, target)
        self._finish_journal(journal, self.journal_path)

    def _finish_journal(self, journal: _Journal, path: PurePath) -> None:
        if self.store.is_file(self.root / journal["new"]):
            self.store.delete([self.root / name for name in journal["old"]])
        self.store.delete([path])

    def recover_compaction(self, *, every: bool = False) -> None:
        """Finish (or drop) a compaction that a killed process left half done: this target's
        (or the dataset's own), or with `every` (holding every target's lock) all of them."""
        for path in self.journal_paths() if every else [self.journal_path]:
            if self.store.is_file(path):
                self._recover_journal(path)

    def _recover_journal(self, path: PurePath) -> None:
        journal = self._read_journal(path)
        self._finish_journal({"new": journal["new"], "old": journal["old"]}, path)

    def _read_journal(self, path: PurePath) -> dict[str, Any]:
        """A journal read back, a compaction's or a commit's. DataError when it is unreadable,
        or names anything but Parquet files inside the partitions: it is a list of files to
        delete, so a planted one must not reach outside the dataset."""
        what = f"{path.stem} journal {self.store.uri(path)}"
        try:
            journal = json.loads(self.store.read_bytes(path))
        except (OSError, ValueError) as exc:
            raise DataError(f"{what} is unreadable: {one_line(str(exc))}") from exc
        if not self._names_only_partition_files(journal):
            raise DataError(
                f"{what} names files outside the dataset's Parquet partitions; remove it, "
                "then run `image-versions verify`"
            )
        return cast(dict[str, Any], journal)

    def _names_only_partition_files(self, journal: object) -> bool:
        if not isinstance(journal, dict):
            return False
        if isinstance(journal.get("old"), list):  # a compaction's
            names = [journal.get("new"), *journal["old"]]
        elif isinstance(journal.get("files"), list) and isinstance(journal.get("commit"), str):
            names = journal["files"]
        else:
            return False
        bases = {self.versions_dir.name, self.details_dir.name, self.sync_runs_dir.name}
        return all(
            isinstance(name, str)
            and name.endswith(".parquet")
            and not PurePath(name).is_absolute()
            and ".." not in PurePath(name).parts
            and PurePath(name).parts[0] in bases
            for name in names
        )
