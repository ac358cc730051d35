"""DuckDB over the Parquet dataset: the views of `DATA/warehouse.duckdb`, and queries for sync.

The views read the Parquet files directly (by glob), so new files show up without touching the
database file; the views are only re-created when their definition changes (a new data path,
a first file, a new release), and an analyst holding the database open never blocks a sync.

An S3 dataset is read without DuckDB's network extensions: each connection (`connect`) lists
the files through pyarrow's S3 filesystem and registers them as Arrow datasets named
`_raw_*`; the same views, kept in a local cache file, read those.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from .errors import ConfigError
from .schema import IMAGE_SCHEMA, IMAGE_VERSION_SCHEMA, STATE_COLUMNS, VERSION_KEY, Row
from .state import STATE_SCHEMA, state_file
from .storage import DataDir

VIEW_NAMES = ("image_versions", "image_version_history", "images", "sync_state")
_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
}
_LATEST_ORDER = "observed_at DESC, last_modified_time DESC, is_deleted DESC"
_VIEW_STATE_SCHEMA = pa.schema([f for f in STATE_SCHEMA if f.name != "window"])
# The Arrow datasets an S3 connection registers: name -> (schema, the files it covers).
_RAW_VERSIONS, _RAW_IMAGES, _RAW_STATE = "_raw_image_versions", "_raw_images", "_raw_sync_state"


def _literal(text: str) -> str:
    """A SQL string literal (DDL cannot take parameters, so paths are quoted here)."""
    return "'" + text.replace("'", "''") + "'"


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    return _DUCKDB_TYPES[arrow_type]


def _columns(schema: pa.Schema) -> str:
    return ", ".join(schema.names)


def _parquet_relation(files_glob: str, schema: pa.Schema, has_files: bool) -> str:
    """A relation with exactly `schema`'s columns: the files, or an empty typed relation."""
    if not has_files:
        typed = ", ".join(f"NULL::{_duckdb_type(f.type)} AS {f.name}" for f in schema)
        return f"(SELECT {typed} WHERE false)"
    return f"(SELECT {_columns(schema)} FROM read_parquet({_literal(files_glob)}))"


def _latest_states(relation: str) -> str:
    """The latest observed state of every version in `relation` (tombstones included)."""
    return (
        f"(SELECT * FROM {relation} QUALIFY row_number() OVER "
        f"(PARTITION BY {', '.join(VERSION_KEY)} ORDER BY {_LATEST_ORDER}) = 1)"
    )


def _arrow_relation(name: str, schema: pa.Schema) -> str:
    """A relation with exactly `schema`'s columns over the Arrow dataset registered as `name`."""
    return f"(SELECT {_columns(schema)} FROM {name})"


def _register(
    connection: duckdb.DuckDBPyConnection,
    data_dir: DataDir,
    name: str,
    files: list[PurePath],
    schema: pa.Schema,
) -> None:
    """Register `files` (read through pyarrow's filesystem layer) on `connection` as `name`."""
    dataset = ds.dataset(
        [str(path) for path in files],
        schema=schema,
        format="parquet",
        filesystem=data_dir.store.filesystem,
    )
    connection.register(name, dataset)


def _register_s3_dataset(connection: duckdb.DuckDBPyConnection, data_dir: DataDir) -> None:
    state = [state_file(data_dir)] if data_dir.store.is_file(state_file(data_dir)) else []
    _register(connection, data_dir, _RAW_VERSIONS, data_dir.version_files(), IMAGE_VERSION_SCHEMA)
    _register(connection, data_dir, _RAW_IMAGES, data_dir.image_files(), IMAGE_SCHEMA)
    _register(connection, data_dir, _RAW_STATE, state, _VIEW_STATE_SCHEMA)


def scan_connection(data_dir: DataDir) -> duckdb.DuckDBPyConnection:
    """An in-memory connection on which `versions_relation(data_dir)` can be read."""
    connection = duckdb.connect()
    if not data_dir.is_local:
        files = data_dir.version_files()
        _register(connection, data_dir, _RAW_VERSIONS, files, IMAGE_VERSION_SCHEMA)
    return connection


def versions_relation(data_dir: DataDir) -> str:
    """Every stored row of `image_versions/`, as a SQL relation with exactly its columns.

    For an S3 dataset it is valid only on a connection from `connect` or `scan_connection`.
    """
    if not data_dir.is_local:
        return _arrow_relation(_RAW_VERSIONS, IMAGE_VERSION_SCHEMA)
    root = _local_root(data_dir)
    return _parquet_relation(
        f"{root}/image_versions/*/*/*.parquet", IMAGE_VERSION_SCHEMA, bool(data_dir.version_files())
    )


def _local_root(data_dir: DataDir) -> Path:
    return data_dir.store.local_dir(data_dir.root).resolve()


def _images_and_state_relations(data_dir: DataDir) -> tuple[str, str]:
    """The relations of `images/` and of the state file (without its window column)."""
    if not data_dir.is_local:
        return (
            _arrow_relation(_RAW_IMAGES, IMAGE_SCHEMA),
            _arrow_relation(_RAW_STATE, _VIEW_STATE_SCHEMA),
        )
    root = _local_root(data_dir)
    images = _parquet_relation(
        f"{root}/images/*/*.parquet", IMAGE_SCHEMA, bool(data_dir.image_files())
    )
    state_path = Path(state_file(data_dir))
    state = _parquet_relation(str(state_path.resolve()), _VIEW_STATE_SCHEMA, state_path.exists())
    return images, state


def view_definitions(data_dir: DataDir) -> dict[str, str]:
    """The SQL of each view, bound to this data dir's absolute paths (or, for S3, datasets)."""
    versions = versions_relation(data_dir)
    images, state = _images_and_state_relations(data_dir)
    state_schema = _VIEW_STATE_SCHEMA
    state_columns = ", ".join(f"s.{name}" for name in state_schema.names if name != "source")
    return {
        "image_versions": (
            f"SELECT {_columns(IMAGE_VERSION_SCHEMA)} FROM {_latest_states(versions)} "
            "WHERE NOT is_deleted"
        ),
        "image_version_history": (
            f"SELECT {', '.join(STATE_COLUMNS)}, min(observed_at) AS observed_at "
            f"FROM {versions} GROUP BY ALL"
        ),
        "images": f"SELECT * FROM {images}",
        "sync_state": (
            f"SELECT s.source, {state_columns}, coalesce(v.version_count, 0) AS version_count "
            f"FROM {state} AS s LEFT JOIN (SELECT account_id, region, image_name, "
            "count(*) AS version_count FROM image_versions GROUP BY ALL) AS v "
            "USING (account_id, region, image_name)"
        ),
    }


def _signature(definitions: dict[str, str]) -> str:
    text = "\n".join(f"{name}\n{sql}" for name, sql in sorted(definitions.items()))
    return "image-versions:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def connect(data_dir: DataDir, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse with UTC as its time zone.

    For an S3 dataset, extensions are never installed from the network, and the dataset's
    files as they are now are registered for the views to read.
    """
    if data_dir.is_local:
        connection = duckdb.connect(str(data_dir.warehouse_path), read_only=read_only)
    else:
        data_dir.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(
            str(data_dir.warehouse_path),
            read_only=read_only,
            config={"autoinstall_known_extensions": False},
        )
        _register_s3_dataset(connection, data_dir)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def refresh_views(data_dir: DataDir) -> bool:
    """(Re)create the views when their definition changed. Returns whether it wrote anything.

    Raises duckdb.IOException when another process holds the database open for writing.
    """
    definitions = view_definitions(data_dir)
    signature = _signature(definitions)
    if data_dir.warehouse_path.exists():
        with connect(data_dir, read_only=True) as connection:
            current = connection.execute(
                "SELECT comment FROM duckdb_views() WHERE view_name = 'sync_state'"
            ).fetchall()
        if current == [(signature,)]:
            return False
    with connect(data_dir, read_only=False) as connection:
        connection.execute("BEGIN")
        for name in VIEW_NAMES:
            connection.execute(f"CREATE OR REPLACE VIEW {name} AS {definitions[name]}")
            connection.execute(f"COMMENT ON VIEW {name} IS {_literal(signature)}")
        connection.execute("COMMIT")
    return True


def ensure_views(data_dir: DataDir) -> None:
    """Make sure the views exist and match the data dir, tolerating a reader holding the file."""
    try:
        refresh_views(data_dir)
    except duckdb.IOException:
        if not data_dir.warehouse_path.exists():
            raise


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(data_dir: DataDir, sql: str) -> QueryResult:
    """Run user SQL on a read-only connection to the warehouse."""
    if not data_dir.warehouse_path.exists():
        raise ConfigError(f"no warehouse for {data_dir.location}; run `image-versions sync` first")
    with connect(data_dir, read_only=True) as connection:
        try:
            relation = connection.sql(sql)
            if relation is None:
                return QueryResult([], [])
            return QueryResult(list(relation.columns), relation.fetchall())
        except duckdb.Error as exc:
            message = " ".join(str(exc).split())
            raise ConfigError(f"query failed: {message}") from exc


def latest_live_rows(
    data_dir: DataDir, account_id: str, region: str, image_names: Iterable[str]
) -> dict[str, dict[int, Row]]:
    """The stored live versions of some images: image -> version -> row (timestamps in ms)."""
    names = sorted(set(image_names))
    partition = data_dir.versions_dir / f"account_region={account_id}.{region}"
    files = data_dir.store.glob(partition, "*/*.parquet")
    result: dict[str, dict[int, Row]] = {name: {} for name in names}
    if not names or not files:
        return result
    selected = ", ".join(
        f"epoch_ms({f.name}) AS {f.name}" if pa.types.is_timestamp(f.type) else f.name
        for f in IMAGE_VERSION_SCHEMA
    )
    with duckdb.connect() as connection:
        if data_dir.is_local:
            relation = _parquet_relation(
                f"{Path(partition).resolve()}/*/*.parquet", IMAGE_VERSION_SCHEMA, True
            )
        else:
            _register(connection, data_dir, _RAW_VERSIONS, files, IMAGE_VERSION_SCHEMA)
            relation = _arrow_relation(_RAW_VERSIONS, IMAGE_VERSION_SCHEMA)
        sql = (
            f"SELECT {selected} FROM {_latest_states(relation)} WHERE NOT is_deleted "
            "AND account_id = ? AND region = ? AND list_contains(?, image_name)"
        )
        cursor = connection.execute(sql, [account_id, region, names])
        columns = [column[0] for column in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(columns, values, strict=True))
            result[row["image_name"]][row["version"]] = row
    return result


def views_summary(data_dir: DataDir, names: Sequence[str] = VIEW_NAMES) -> dict[str, int]:
    """Row count of each view (for summaries and metadata)."""
    with connect(data_dir, read_only=True) as connection:
        return {
            name: int(connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # type: ignore[index]
            for name in names
        }
