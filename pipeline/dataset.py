"""The stored dataset as pyarrow reads it: which files each table holds, one account and
region's rows read back for the sync, and the rule of which stored state of a version is its
latest.

The sync reads its own rows here, never through DuckDB: a full listing is compared with the
latest live rows of its account and region (`latest_live_rows`), and enrichment skips the
states already described (`described_states`). Both read one account and region's partition,
file by file, only the columns they need, through the data dir's store (local or S3). The
DuckDB views (warehouse.py) are for queries and checks; they apply the same rule in SQL
(`LATEST_FIRST`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError
from .model import VERSION_KEY, Row
from .schema import (
    IMAGE_SCHEMA,
    IMAGE_VERSION_DETAILS_SCHEMA,
    IMAGE_VERSION_SCHEMA,
    STATE_SCHEMA,
    SYNC_RUNS_SCHEMA,
    Tags,
    table_to_rows,
)
from .state import readable_state_files
from .storage import DataDir, UnreadableFile

__all__ = [
    "DATA_TABLES",
    "DETAILS",
    "IMAGES",
    "LATEST_FIRST",
    "SYNC_RUNS",
    "VERSIONS",
    "Described",
    "StoredTable",
    "data_files",
    "dataset_files",
    "described_states",
    "latest_live_rows",
    "latest_states",
    "stored_images",
    "unreadable",
    "unreadable_file_error",
]

LATEST_FIRST: tuple[tuple[str, str], ...] = (
    ("observed_at", "descending"),
    ("last_modified_time", "descending"),
    ("is_deleted", "descending"),
)
"""Which stored state of a version (`VERSION_KEY`) is its latest: the one observed last; of
states observed at one instant, the one the API modified last; of those, the tombstone. (A
table without one of these columns, the details, skips it.)

The one definition of "latest": `latest_states` applies it with pyarrow for the sync, and
warehouse.py's views, macro and changes apply it in SQL, their ORDER BY derived from this
constant. tests/unit/test_dataset.py checks that both pick the same rows from the same files,
ties and tombstones included. States equal in all three are the same state stored twice, or an
ambiguity that `quality.no_duplicate_live_versions` reports."""

_RULE_COLUMNS = list(dict.fromkeys([*VERSION_KEY, *(name for name, _ in LATEST_FIRST)]))
"""The columns of versions that finding the latest states reads."""
_LOCATION = "_location"
_ROW_BITS = 32
"""A `_location` is a file's number shifted left by this many bits, plus a row in it."""
_REDUCE_ROWS = 500_000
"""Rows read before they are reduced to the latest states seen so far: memory holds the
partition's latest states and this many more, never its whole history."""


@dataclass(frozen=True)
class StoredTable:
    """A table of the dataset: the directory of its Parquet files, and their schema."""

    name: str
    schema: pa.Schema
    directory: Callable[[DataDir], PurePath]

    def files(self, data_dir: DataDir) -> list[PurePath]:
        """Every file of the table."""
        base = self.directory(data_dir)
        return data_dir.store.glob(base, data_dir.files_pattern(base))


VERSIONS = StoredTable("image_versions", IMAGE_VERSION_SCHEMA, lambda d: d.versions_dir)
IMAGES = StoredTable("images", IMAGE_SCHEMA, lambda d: d.images_dir)
DETAILS = StoredTable(
    "image_version_details", IMAGE_VERSION_DETAILS_SCHEMA, lambda d: d.details_dir
)
SYNC_RUNS = StoredTable("sync_runs", SYNC_RUNS_SCHEMA, lambda d: d.sync_runs_dir)
DATA_TABLES = (VERSIONS, IMAGES, DETAILS, SYNC_RUNS)
"""The tables of data; the state (state.py) is the dataset's other table."""


def data_files(data_dir: DataDir) -> list[tuple[PurePath, pa.Schema]]:
    """Every data file of the dataset (the state aside), with the schema it must hold."""
    return [(path, table.schema) for table in DATA_TABLES for path in table.files(data_dir)]


def dataset_files(data_dir: DataDir) -> list[tuple[PurePath, pa.Schema]]:
    """Every Parquet file that the views read, with the schema it must hold."""
    return [*data_files(data_dir), *((p, STATE_SCHEMA) for p in readable_state_files(data_dir))]


def unreadable(data_dir: DataDir, path: PurePath, schema: pa.Schema) -> UnreadableFile | None:
    """Why a Parquet file cannot be read back with `schema`, or None when it can."""
    try:
        data_dir.read_checked(path, schema)
    except UnreadableFile as exc:
        return exc
    return None


def _unreadable_error(data_dir: DataDir, path: PurePath, problem: UnreadableFile) -> DataError:
    """One line naming the file (relative to the data dir), why, and what to do."""
    where = f"{path.relative_to(data_dir.root)} in {data_dir.location}"
    if isinstance(problem.__cause__, PermissionError):
        return DataError(
            f"{where} cannot be read: permission denied (written by another user?); make "
            "it readable to this user, or run `image-versions verify --repair` to move it "
            "aside"
        )
    return DataError(
        f"{where} cannot be read ({problem}); run `image-versions verify --repair` to move it aside"
    )


def unreadable_file_error(
    data_dir: DataDir,
    message: str,
    files: list[tuple[PurePath, pa.Schema]],
    *,
    named_only: bool = False,
) -> DataError | None:
    """The error to show when a reader of `files` failed with `message`: one line naming the
    first of them that cannot be read (relative to the data dir) and what to do; None when
    each reads back.

    The files that `message` (DuckDB's or Arrow's) names are tried first, and only they when
    `named_only`: a failed user query must not cost a read of the whole dataset.
    """

    def named(path: PurePath) -> bool:
        shown = str(Path(path).resolve()) if data_dir.is_local else str(path)
        return shown in message

    candidates = [file for file in files if named(file[0])]
    if not named_only:
        candidates += [file for file in files if not named(file[0])]
    for path, schema in candidates:
        problem = unreadable(data_dir, path, schema)
        if problem is not None:
            return _unreadable_error(data_dir, path, problem)
    return None


def latest_states(table: pa.Table) -> pa.Table:
    """The latest state (`LATEST_FIRST`) of every version in `table`, tombstones included, in
    key order. Pure: the rule itself, over rows in memory."""
    latest_first = [(name, way) for name, way in LATEST_FIRST if name in table.schema.names]
    rows = table.num_rows
    if rows == 0:
        return table
    narrow = table.select([*VERSION_KEY, *(name for name, _ in latest_first)])
    narrow = narrow.append_column("_position", pa.array(range(rows), pa.int64()))
    ranked = narrow.sort_by([(name, "ascending") for name in VERSION_KEY] + latest_first)
    # Sorted so, each version's latest state is its first row: where the key changes.
    keys = [ranked.column(name) for name in VERSION_KEY]
    changed = functools.reduce(
        pc.or_, (pc.not_equal(key.slice(1), key.slice(0, rows - 1)) for key in keys)
    )
    first = pa.chunked_array([pa.array([True]), *changed.chunks])
    return table.take(ranked.column("_position").filter(first))


def _read(
    data_dir: DataDir, path: PurePath, schema: pa.Schema, columns: list[str] | None = None
) -> pa.Table:
    """`columns` (all when None) of one file, which must hold exactly `schema`; DataError
    naming the file when it cannot be read or holds something else."""
    try:
        return data_dir.read_checked(path, schema, columns)
    except UnreadableFile as problem:
        raise _unreadable_error(data_dir, path, problem) from problem


def _partition_tables(
    data_dir: DataDir,
    files: list[PurePath],
    key: tuple[str, str],
    schema: pa.Schema,
    image_names: list[str] | None,
    columns: list[str],
) -> Iterator[pa.Table]:
    """`columns` of the rows of one (account, region) partition's `files`, a file at a time,
    only those of `image_names` (every image's when None); with each row's `_location`: its
    file's number in `files` and its row in that file."""
    account_id, region = key
    wanted = None if image_names is None else pa.array(image_names, pa.string())
    for number, path in enumerate(files):
        table = _read(data_dir, path, schema, columns)
        first = number << _ROW_BITS
        table = table.append_column(
            _LOCATION, pa.array(range(first, first + table.num_rows), pa.int64())
        )
        mine = pc.and_(
            pc.equal(table.column("account_id"), account_id),
            pc.equal(table.column("region"), region),
        )
        if wanted is not None:
            mine = pc.and_(mine, pc.is_in(table.column("image_name"), value_set=wanted))
        yield table.filter(mine)


def _latest_of(tables: Iterable[pa.Table]) -> pa.Table | None:
    """`latest_states` of all of `tables` together, reduced as they are read (the latest of
    the latest states is the latest: the rule is an order); None when there are none."""
    latest: list[pa.Table] = []
    pending: list[pa.Table] = []
    for table in tables:
        pending.append(table)
        if sum(t.num_rows for t in pending) >= max([_REDUCE_ROWS, *(t.num_rows for t in latest)]):
            latest, pending = [latest_states(pa.concat_tables(latest + pending))], []
    if pending:
        latest = [latest_states(pa.concat_tables(latest + pending))]
    return latest[0] if latest else None


def _rows_at(
    data_dir: DataDir, files: list[PurePath], schema: pa.Schema, locations: pa.ChunkedArray
) -> Iterator[Row]:
    """The rows at `locations` (`_partition_tables`), every column, a file at a time."""
    ordered = pc.array_sort_indices(locations)
    locations = pc.take(locations, ordered)
    numbers = pc.shift_right(locations, _ROW_BITS)
    rows = pc.bit_wise_and(locations, (1 << _ROW_BITS) - 1)
    for number in pc.unique(numbers).to_pylist():
        mine = rows.filter(pc.equal(numbers, number))
        yield from table_to_rows(_read(data_dir, files[number], schema).take(mine))


def latest_live_rows(
    data_dir: DataDir, account_id: str, region: str, image_names: Iterable[str] | None = None
) -> dict[str, dict[int, Row]]:
    """The stored live versions of some images (all of the account and region's when None):
    image -> version -> row (timestamps in ms).

    The latest states are found over the columns the rule needs; only the live ones are then
    read whole. Raises DataError naming the file when one of the partition cannot be read.
    """
    names = None if image_names is None else sorted(set(image_names))
    result: dict[str, dict[int, Row]] = {name: {} for name in names or ()}
    if names == []:
        return result
    key = (account_id, region)
    files = _partition_files(data_dir, data_dir.versions_dir, key)
    schema = IMAGE_VERSION_SCHEMA
    latest = _latest_of(_partition_tables(data_dir, files, key, schema, names, _RULE_COLUMNS))
    if latest is None:
        return result
    live = latest.filter(pc.invert(latest.column("is_deleted"))).column(_LOCATION)
    for row in _rows_at(data_dir, files, schema, live):
        result.setdefault(row["image_name"], {})[row["version"]] = row
    return result


@dataclass
class Described:
    """What enrichment stored of one image: the states that have details, and each version's
    aliases as its latest details recorded them."""

    states: set[tuple[int, int]] = field(default_factory=set)
    """(version, last_modified_time ms) of every state with details."""
    aliases: dict[int, frozenset[str]] = field(default_factory=dict)
    """version -> its aliases, as last observed."""
    tags: dict[int, Tags | None] = field(default_factory=dict)
    """version -> its tags, as last observed (None: described before tags were read)."""


def described_states(
    data_dir: DataDir, account_id: str, region: str, image_names: Iterable[str]
) -> dict[str, Described]:
    """What enrichment stored of each named image (`Described`).

    Raises DataError naming the file when one of the partition cannot be read.
    """
    names = sorted(set(image_names))
    result = {name: Described() for name in names}
    if not names:
        return result
    key = (account_id, region)
    files = _partition_files(data_dir, data_dir.details_dir, key)
    columns = ["account_id", "region", "image_name", "version", "last_modified_time"]
    columns += ["aliases", "observed_at", "tags"]
    schema = IMAGE_VERSION_DETAILS_SCHEMA
    seen_at: dict[tuple[str, int], int] = {}
    for table in _partition_tables(data_dir, files, key, schema, names, columns):
        for name, version, modified_ms, aliases, observed_ms, tags in zip(
            table.column("image_name").to_pylist(),
            table.column("version").to_pylist(),
            table.column("last_modified_time").cast(pa.int64()).to_pylist(),
            table.column("aliases").to_pylist(),
            table.column("observed_at").cast(pa.int64()).to_pylist(),
            table.column("tags").to_pylist(),
            strict=True,
        ):
            described = result[name]
            described.states.add((version, modified_ms))
            if observed_ms >= seen_at.get((name, version), observed_ms):
                seen_at[(name, version)] = observed_ms
                described.aliases[version] = frozenset(aliases)
                described.tags[version] = None if tags is None else sorted(tags)
    return result


def stored_images(data_dir: DataDir, account_id: str, region: str) -> dict[str, Row]:
    """The catalogue stored of one account and region: image -> row (timestamps in ms).

    Empty when there is none or it cannot be read: it only spares calls (catalogue depth
    carries roles over from it), and the sync replaces it."""
    try:
        table = data_dir.read_checked(data_dir.images_file(account_id, region), IMAGE_SCHEMA)
    except (FileNotFoundError, UnreadableFile):
        return {}
    return {row["image_name"]: row for row in table_to_rows(table)}


def _partition_files(data_dir: DataDir, base: PurePath, key: tuple[str, str]) -> list[PurePath]:
    """The files of one (account, region) partition under `base`."""
    partition = data_dir.account_region_dir(base, *key)
    return data_dir.store.glob(partition, data_dir.MONTH_FILES)
