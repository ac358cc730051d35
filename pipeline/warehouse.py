"""DuckDB over the Parquet dataset: the views of `DATA/warehouse.duckdb`, and read-only
queries over them (the sync reads its own rows with pyarrow: dataset.py).

The views (and the table macro `image_versions_as_of`) read the Parquet files directly (by
glob), so new files show up without touching the database file; they are only re-created when
their definition changes (a new data path, a first file, a new release). A refresh builds a
whole new file beside the old one, in the storage format DuckDB 1.1 reads, and renames it into
place: readers, an analyst's DuckDB session included, keep the file they opened and never
block a refresh. Refreshes of one file take turns through a lock file beside it; a process
that finds the views current reads the file and takes no lock. The file holds nothing else,
so an unreadable one is simply replaced.

`image-versions query` and `status` never open that file: they build the same views as TEMP
objects on an in-memory connection that runs only read-only statements (readonly_sql.py) and
can read no file outside the data dir; `query` prints the rows as they are read.

How the views read each stored table, by glob or (for S3) through Arrow datasets registered
on each connection, is relations.py's; for S3 the warehouse file is kept in a local cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import duckdb
import pyarrow as pa
from filelock import FileLock, Timeout

from .dataset import (
    DETAILS,
    IMAGES,
    LATEST_FIRST,
    SYNC_RUNS,
    VERSIONS,
    dataset_files,
    unreadable_file_error,
)
from .errors import ConfigError, DataError, one_line
from .model import STATE_COLUMNS, VERSION_KEY
from .readonly_sql import check_read_only
from .relations import Relations, column_list, relations_of, sql_literal
from .schema import IMAGE_VERSION_DETAILS_SCHEMA, IMAGE_VERSION_SCHEMA, SYNC_STATE_VIEW_SCHEMA
from .storage import DataDir

__all__ = [
    "AS_OF_MACRO",
    "REFRESH_LOCK_TIMEOUT_S",
    "STORAGE_COMPATIBILITY",
    "VIEW_NAMES",
    "QueryResult",
    "QueryStream",
    "connect",
    "latest_order",
    "latest_states",
    "naming_unreadable_files",
    "query_arrow",
    "refresh_views",
    "run_query",
    "scan_connection",
    "stream_query",
    "versions_relation",
    "views_summary",
    "views_summary_by_source",
    "warehouse_statements",
]

log = logging.getLogger(__name__)
VIEW_NAMES = (
    "image_versions",
    "image_version_history",
    "image_version_changes",
    "images",
    "sync_state",
    "image_version_details",
    "image_version_aliases",
    "sync_runs",
)
SUMMARY_VIEWS = (
    "image_versions",
    "image_version_history",
    "images",
    "sync_state",
    "image_version_details",
    "sync_runs",
)
"""The views whose row counts summaries report (`image_version_changes` costs a window pass)."""
AS_OF_MACRO = "image_versions_as_of"
DELETED_STATUS = "DELETED"
"""The `to_status` of a version's deletion in `image_version_changes` (from its tombstone)."""
# Bytes 8-12 of every DuckDB database file (its main header's magic).
_DUCKDB_MAGIC_AT, _DUCKDB_MAGIC = slice(8, 12), b"DUCK"
STORAGE_COMPATIBILITY = "v1.1.0"
"""The oldest DuckDB release that must open the warehouse file. DuckDB then writes storage
version 64, which every release since 1.0 reads; the pinned release's default, no 1.x reads."""
REFRESH_LOCK_TIMEOUT_S = 60.0
"""How long a refresh waits for another process's refresh of the same file (each takes well
under a second)."""
QUERY_BATCH_ROWS = 2048  # a few MB of Python objects at most; per-batch costs do not count


def latest_order(schema: pa.Schema) -> str:
    """`LATEST_FIRST` (dataset.py, the one definition of "latest") as an ORDER BY, over the
    columns of `schema` it names."""
    return ", ".join(
        f"{name} {'DESC' if way == 'descending' else 'ASC'}"
        for name, way in LATEST_FIRST
        if name in schema.names
    )


def latest_states(relation: str, schema: pa.Schema = IMAGE_VERSION_SCHEMA) -> str:
    """The latest observed state (`LATEST_FIRST`) of every version in `relation`, whose
    columns are `schema`'s (tombstones included)."""
    return (
        f"(SELECT * FROM {relation} QUALIFY row_number() OVER "
        f"(PARTITION BY {', '.join(VERSION_KEY)} ORDER BY {latest_order(schema)}) = 1)"
    )


def _as_of(relation: str) -> str:
    """The live versions as the dataset knew them at the macro's parameter `ts`.

    Keyed on `observed_at`, the one clock every row has (a deletion has no API stamp): the
    latest state of each version observed at or before `ts`, dropped when it is a tombstone.
    Rows are only ever appended with a later `observed_at`, so the answer for a past instant
    never changes, and at or after the last sync it equals `image_versions`.
    """
    observed = f"(SELECT * FROM {relation} WHERE observed_at <= CAST(ts AS TIMESTAMPTZ))"
    latest = latest_states(observed)
    return f"SELECT {column_list(IMAGE_VERSION_SCHEMA)} FROM {latest} WHERE NOT is_deleted"


def _changes(relation: str) -> str:
    """One row per status transition of each version, in `observed_at` order.

    A tombstone's status counts as 'DELETED'. At one `observed_at` only the state the views
    would pick counts; repeated observations of a status (re-reads, updates that keep it) are
    one stay, so the view agrees with `image_versions_as_of` at every instant.
    """
    key = ", ".join(VERSION_KEY)
    observations = (
        f"SELECT {key}, observed_at, last_modified_time, "
        f"CASE WHEN is_deleted THEN {sql_literal(DELETED_STATUS)} ELSE status END AS status "
        f"FROM {relation} QUALIFY row_number() OVER (PARTITION BY {key}, observed_at "
        f"ORDER BY {latest_order(IMAGE_VERSION_SCHEMA)}) = 1"
    )
    transitions = (
        f"SELECT *, lag(status) OVER (PARTITION BY {key} ORDER BY observed_at) AS from_status "
        f"FROM ({observations}) QUALIFY from_status IS DISTINCT FROM status"
    )
    return (
        f"SELECT {key}, from_status, status AS to_status, observed_at AS changed_at, "
        f"observed_at - lag(observed_at) OVER (PARTITION BY {key} ORDER BY observed_at) "
        "AS time_in_previous_status, "
        f"CASE WHEN status <> {sql_literal(DELETED_STATUS)} THEN last_modified_time END "
        f"AS last_modified_time FROM ({transitions})"
    )


def _alias_history(details: str, versions: str) -> str:
    """The `image_version_aliases` view: for each alias of an image, which version it named
    from when (`valid_from`) until when (`valid_to`, NULL while it still does), from every
    stored details row (`details`) and the versions' tombstones (`versions`).

    A details row of a version holding the alias claims it from its `observed_at`. A later
    details row of the holder without it, or the holder's tombstone, releases it; a release
    of a version that no longer held it (the alias had moved on) changes nothing, so it is
    matched with the alias's last claim (ASOF) first. Consecutive claims by one version are
    one interval."""
    image = "account_id, region, image_name"
    claims = f"SELECT {image}, version, unnest(aliases) AS alias, observed_at FROM {details}"
    held = f"SELECT DISTINCT {image}, alias, version FROM ({claims})"
    releases = (
        f"SELECT h.*, d.observed_at FROM ({held}) AS h JOIN {details} AS d "
        f"USING ({image}, version) WHERE NOT list_contains(d.aliases, h.alias) UNION ALL "
        f"SELECT h.*, v.observed_at FROM ({held}) AS h JOIN {versions} AS v "
        f"USING ({image}, version) WHERE v.is_deleted"
    )
    same_alias = " AND ".join(f"r.{c} = c.{c}" for c in ("account_id", "region", "image_name"))
    effective = (
        f"SELECT r.account_id, r.region, r.image_name, r.alias, NULL::INTEGER AS version, "
        f"r.observed_at FROM ({releases}) AS r ASOF JOIN ({claims}) AS c "
        f"ON {same_alias} AND r.alias = c.alias AND r.observed_at >= c.observed_at "
        "WHERE r.version = c.version"
    )
    events = f"SELECT {image}, alias, version, observed_at FROM ({claims}) UNION ALL {effective}"
    per_alias = f"PARTITION BY {image}, alias ORDER BY observed_at, version NULLS FIRST"
    changes = (
        f"SELECT * FROM ({events}) QUALIFY version IS DISTINCT FROM lag(version) OVER ({per_alias})"
    )
    return (
        f"SELECT {image}, image_name AS image, version, alias, observed_at AS valid_from, "
        f"lead(observed_at) OVER ({per_alias}) AS valid_to FROM ({changes}) "
        "QUALIFY version IS NOT NULL"
    )


def scan_connection(data_dir: DataDir) -> duckdb.DuckDBPyConnection:
    """An in-memory connection on which `versions_relation(data_dir)` can be read."""
    connection = duckdb.connect()
    relations_of(data_dir).attach(connection, [VERSIONS], state=False)
    return connection


def versions_relation(data_dir: DataDir) -> str:
    """Every stored row of `image_versions/`, as a SQL relation with exactly its columns.

    For an S3 dataset it is valid only on a connection from `connect` or `scan_connection`.
    """
    return relations_of(data_dir).table(VERSIONS)


def _latest_details(relations: Relations) -> str:
    """The `image_version_details` view: the most recently observed details of each version."""
    schema = IMAGE_VERSION_DETAILS_SCHEMA
    latest = latest_states(relations.table(DETAILS), schema)
    return f"SELECT {column_list(schema)} FROM {latest}"


def _local_root(data_dir: DataDir) -> Path:
    return data_dir.store.local_dir(data_dir.root).resolve()


def _view_definitions(data_dir: DataDir, versions: str) -> dict[str, str]:
    """The SQL of each view over `versions` (the data dir's `versions_relation`), bound to
    this data dir's absolute paths (or, for S3, datasets)."""
    relations = relations_of(data_dir)
    state = relations.state()
    state_schema = SYNC_STATE_VIEW_SCHEMA
    state_columns = ", ".join(f"s.{name}" for name in state_schema.names if name != "source")
    return {
        "image_versions": (
            f"SELECT {column_list(IMAGE_VERSION_SCHEMA)} FROM {latest_states(versions)} "
            "WHERE NOT is_deleted"
        ),
        "image_version_history": (
            f"SELECT {', '.join(STATE_COLUMNS)}, min(observed_at) AS observed_at "
            f"FROM {versions} GROUP BY ALL"
        ),
        "image_version_changes": _changes(versions),
        "images": f"SELECT * FROM {relations.table(IMAGES)}",
        "sync_state": (
            f"SELECT s.source, {state_columns}, coalesce(v.version_count, 0) AS version_count "
            f"FROM {state} AS s LEFT JOIN (SELECT account_id, region, image_name, "
            "count(*) AS version_count FROM image_versions GROUP BY ALL) AS v "
            "USING (account_id, region, image_name)"
        ),
        "image_version_details": _latest_details(relations),
        "image_version_aliases": _alias_history(relations.table(DETAILS), versions),
        "sync_runs": f"SELECT * FROM {relations.table(SYNC_RUNS)}",
    }


def warehouse_statements(data_dir: DataDir, *, temporary: bool = False) -> list[tuple[str, str]]:
    """(object, DDL) for every view and macro of the warehouse, in creation order; TEMP
    objects when `temporary`."""
    versions = versions_relation(data_dir)  # lists the files: once for the views and the macro
    views = _view_definitions(data_dir, versions)
    macro = _as_of(versions)
    create = "CREATE OR REPLACE TEMP" if temporary else "CREATE OR REPLACE"
    return [
        *((f"VIEW {name}", f"{create} VIEW {name} AS {views[name]}") for name in VIEW_NAMES),
        (f"MACRO TABLE {AS_OF_MACRO}", f"{create} MACRO {AS_OF_MACRO}(ts) AS TABLE {macro}"),
    ]


def _signature(statements: list[tuple[str, str]]) -> str:
    """What the file holds, hashed: its objects and its storage format (so a file written in
    another format is rebuilt)."""
    text = "\n".join([STORAGE_COMPATIBILITY, *(sql for _, sql in statements)])
    return "image-versions:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def connect(data_dir: DataDir, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse with UTC as its time zone.

    For an S3 dataset, extensions are never installed from the network, and the dataset's
    files as they are now are registered for the views to read.
    """
    return _connect_file(data_dir, data_dir.warehouse_path, read_only=read_only)


def _connect_file(
    data_dir: DataDir, path: Path, *, read_only: bool, new_file: bool = False
) -> duckdb.DuckDBPyConnection:
    """`connect`, to the database file at `path`; a `new_file` is written in the format of
    `STORAGE_COMPATIBILITY`. (Only then: in one process DuckDB refuses a second connection to
    a file with another configuration than the first's.)"""
    config = {"storage_compatibility_version": STORAGE_COMPATIBILITY} if new_file else {}
    connection = relations_of(data_dir).connect_file(path, read_only=read_only, config=config)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def _beside(path: Path, suffix: str) -> Path:
    """A file that belongs with `path`: its write-ahead log, its lock, its replacement."""
    return path.with_name(path.name + suffix)


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    """Whether DuckDB refused the file because another process holds it open."""
    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


def _current_signature(data_dir: DataDir) -> list[tuple[Any, ...]]:
    """The signature the warehouse file's views carry (empty when there is no file).

    An unreadable file (garbage, truncated, not DuckDB's) is logged and reported as empty: it
    holds nothing but views, which the caller then rebuilds. So is a file that another process
    holds open for writing (an analyst's read-write session): the rebuilt file replaces it.
    """
    path = data_dir.warehouse_path
    if path.is_dir():
        raise DataError(
            f"{path} is a directory where the DuckDB warehouse file belongs; remove it "
            "(the file holds only views, rebuilt by the next sync)"
        )
    if not path.exists():
        return []
    with path.open("rb") as file:
        header = file.read(_DUCKDB_MAGIC_AT.stop)
    # Checked before DuckDB opens it: DuckDB would open e.g. a SQLite file through an
    # extension (downloading it first) instead of refusing it.
    if header[_DUCKDB_MAGIC_AT] != _DUCKDB_MAGIC:
        problem = "not a DuckDB database file"
    else:
        try:
            with connect(data_dir, read_only=True) as connection:
                return connection.execute(
                    "SELECT comment FROM duckdb_views() WHERE view_name = 'sync_state'"
                ).fetchall()
        except duckdb.Error as exc:
            if _is_lock_conflict(exc):
                log.info("replacing the warehouse %s, held open for writing elsewhere", path)
                return []
            problem = one_line(str(exc))
    log.warning("rebuilding the unreadable warehouse %s: %s", path, problem)
    return []


@contextlib.contextmanager
def naming_unreadable_files(
    data_dir: DataDir,
    files: Callable[[], list[tuple[PurePath, pa.Schema]]] | None = None,
    *,
    named_only: bool = False,
) -> Iterator[None]:
    """Turn a DuckDB error that a file of the dataset caused (unreadable, truncated, foreign)
    into a DataError naming that file and the repair; any other error passes unchanged.

    `files` are the candidates (by default every file the views read); with `named_only`
    only those the error names are read back (for user SQL: a typo must not cost a read of
    the whole dataset). Every reader of the dataset through DuckDB goes through here.
    """
    try:
        yield
    except duckdb.Error as exc:
        candidates = files() if files is not None else dataset_files(data_dir)
        error = unreadable_file_error(data_dir, str(exc), candidates, named_only=named_only)
        if error is None:
            raise
        raise error from exc


@contextlib.contextmanager
def _refresh_turn(data_dir: DataDir, timeout_s: float) -> Iterator[None]:
    """Hold the lock that serialises refreshes of the warehouse file, waiting up to `timeout_s`.

    Not the dataset's writer lock: syncs of different targets, in separate processes, each
    finish with a refresh.
    """
    lock = FileLock(_beside(data_dir.warehouse_path, ".lock"), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout as exc:
        raise ConfigError(
            f"another process has been refreshing the views of {data_dir.location} for "
            f"{timeout_s:g} s; run again once it has finished"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _replace_warehouse(data_dir: DataDir, statements: list[tuple[str, str]]) -> None:
    """Build a warehouse file holding `statements` beside the current one, then rename it over
    that one: a reader sees the old file or the new one, whole."""
    path = data_dir.warehouse_path
    built = _beside(path, ".new")
    for leftover in (built, _beside(built, ".wal")):  # from a refresh killed midway
        leftover.unlink(missing_ok=True)
    signature = sql_literal(_signature(statements))
    with (
        _connect_file(data_dir, built, read_only=False, new_file=True) as connection,
        naming_unreadable_files(data_dir),  # creating a view reads its first file's schema
    ):
        connection.execute("BEGIN")
        for target, sql in statements:
            connection.execute(sql)
            connection.execute(f"COMMENT ON {target} IS {signature}")
        connection.execute("COMMIT")
    # A log the old file left (a writer that crashed) would be replayed into the new one.
    _beside(path, ".wal").unlink(missing_ok=True)
    os.replace(built, path)


def _is_current(data_dir: DataDir) -> tuple[bool, list[tuple[str, str]]]:
    """Whether the warehouse file holds the views of the data dir as it is now, and their DDL."""
    statements = warehouse_statements(data_dir)
    return _current_signature(data_dir) == [(_signature(statements),)], statements


def refresh_views(data_dir: DataDir, *, lock_timeout_s: float = REFRESH_LOCK_TIMEOUT_S) -> bool:
    """(Re)create the views and the macro when their definition changed.

    Returns whether it wrote anything. Every object carries the signature of the whole set as
    its comment, all written in one transaction; `sync_state`'s is the one checked. The
    definition is read again once the refresh lock is held, so the last refresh to run saw
    every file that the ones before it saw.
    Raises ConfigError when another refresh holds the lock for `lock_timeout_s`, and
    DataError when the warehouse path is a directory.
    """
    if _is_current(data_dir)[0]:
        return False
    with _refresh_turn(data_dir, lock_timeout_s):
        current, statements = _is_current(data_dir)
        if current:  # another process refreshed them while this one waited
            return False
        _replace_warehouse(data_dir, statements)
    return True


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    types: list[duckdb.sqltypes.DuckDBPyType]


@contextlib.contextmanager
def _dataset_connection(data_dir: DataDir) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory connection holding the views and the macro as TEMP objects, in UTC, that
    can read files only under the data dir (and nothing from the network).

    Nothing touches `warehouse.duckdb`: a damaged one does not matter, no lock is taken.
    """
    allowed = os.path.join(_local_root(data_dir), "")
    # DuckDB opens its spill directory (by default ./.tmp) to reads, and duckdb_extensions()
    # lists the extension directory: both go to a private, empty directory instead.
    with tempfile.TemporaryDirectory(prefix="image-versions-query-") as scratch:
        config: dict[str, str | bool | int | float | list[str]] = {
            "temp_directory": scratch,
            "extension_directory": os.path.join(scratch, "extensions"),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        with duckdb.connect(config=config) as connection:
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute("SET enable_progress_bar = false")  # it draws on stdout
            relations_of(data_dir).attach(connection)
            with naming_unreadable_files(data_dir):
                for _, sql in warehouse_statements(data_dir, temporary=True):
                    connection.execute(sql)
            # In this order: allowed_directories cannot be set at connect time, nor once
            # external access is off; the lock stops SQL from turning either back.
            connection.execute(f"SET allowed_directories = [{sql_literal(allowed)}]")
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
            with naming_unreadable_files(data_dir, named_only=True):
                yield connection


@dataclass(frozen=True)
class QueryStream:
    """A query's columns, their DuckDB types, and its rows in batches as they are read."""

    columns: list[str]
    types: list[duckdb.sqltypes.DuckDBPyType]
    batches: Iterator[list[tuple[Any, ...]]]


@contextlib.contextmanager
def _user_query(data_dir: DataDir, sql: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for user SQL: read-only statements (`sql` is checked first), over the
    views, reading only the dataset. ConfigError (one line) when DuckDB refuses it, when run
    or while its rows are read inside this context."""
    try:
        check_read_only(sql)
        with _dataset_connection(data_dir) as connection:
            yield connection
    except duckdb.Error as exc:
        message = one_line(str(exc))
        if isinstance(exc, duckdb.PermissionException):
            message += f" (query reads no file outside {data_dir.location})"
        raise ConfigError(f"query failed: {message}") from exc


@contextlib.contextmanager
def stream_query(
    data_dir: DataDir,
    sql: str,
    batch_rows: int = QUERY_BATCH_ROWS,
    params: Sequence[Any] = (),
) -> Iterator[QueryStream]:
    """Run user SQL (`_user_query`, with `params` for its `?`); its rows are read
    `batch_rows` at a time while the caller takes them, inside this context, so memory does
    not grow with the result."""
    with _user_query(data_dir, sql) as connection:
        described = connection.execute(sql, list(params)).description or []

        def batches() -> Iterator[list[tuple[Any, ...]]]:
            while described and (batch := connection.fetchmany(batch_rows)):
                yield batch

        yield QueryStream([c[0] for c in described], [c[1] for c in described], batches())


def run_query(data_dir: DataDir, sql: str, params: Sequence[Any] = ()) -> QueryResult:
    """`stream_query`, every row held."""
    with stream_query(data_dir, sql, params=params) as result:
        rows = [row for batch in result.batches for row in batch]
        return QueryResult(result.columns, rows, result.types)


def query_arrow(data_dir: DataDir, sql: str) -> pa.Table:
    """User SQL (`_user_query`) as one Arrow table, DuckDB's types kept: what pandas
    (`.to_pandas()`) and polars (`polars.from_arrow`) take without a copy per row."""
    with _user_query(data_dir, sql) as connection:
        relation = connection.sql(sql)
        return pa.table({}) if relation is None else relation.to_arrow_table()


def views_summary(data_dir: DataDir, names: Sequence[str] = SUMMARY_VIEWS) -> dict[str, int]:
    """Row count of each view (for summaries and metadata), over the views built in memory: it
    needs no warehouse file, so it answers before the warehouse asset has made one."""
    with _dataset_connection(data_dir) as connection:
        return {
            name: int(connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # type: ignore[index]
            for name in names
        }


def views_summary_by_source(
    data_dir: DataDir, names: Sequence[str]
) -> dict[tuple[str, str], dict[str, int]]:
    """Row count of each view per (source as the sources file names it, region), a Dagster
    partition's own: an account and region count for the source whose `sync_state` has them
    (a member account's source is `SOURCE/ACCOUNT`)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    with _dataset_connection(data_dir) as connection:
        for name in names:
            for source, region, count in connection.execute(
                f"SELECT split_part(s.source, '/', 1), region, count(*) FROM {name} JOIN "
                "(SELECT DISTINCT source, account_id, region FROM sync_state) AS s "
                "USING (account_id, region) GROUP BY ALL"
            ).fetchall():
                counts.setdefault((source, region), dict.fromkeys(names, 0))[name] = int(count)
    return counts
