"""How DuckDB reads the stored tables of a data dir: each as a SQL relation with exactly its
table's columns.

A local data dir is read by glob, so that new files need no new view. An S3 data dir is read
without DuckDB's network extensions: a connection lists its files through pyarrow's S3
filesystem and registers them as Arrow datasets named `_raw_*`, which the relations name.
`relations_of` makes that choice once; nothing else in the warehouse asks which store it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import duckdb
import pyarrow as pa

from .dataset import DATA_TABLES, StoredTable
from .evolution import added_columns
from .schema import SYNC_STATE_VIEW_SCHEMA
from .state import STATE_FILES_PATTERN, readable_state_files, state_files
from .storage import DataDir

__all__ = ["Relations", "column_list", "relations_of", "sql_literal"]

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.float64(): "DOUBLE",
}
_RAW_STATE = "_raw_sync_state"
"""The Arrow dataset of the state files that an S3 connection registers."""


def sql_literal(text: str) -> str:
    """A SQL string literal (DDL cannot take parameters, so paths are quoted here)."""
    return "'" + text.replace("'", "''") + "'"


def column_list(schema: pa.Schema) -> str:
    return ", ".join(schema.names)


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    if pa.types.is_list(arrow_type):
        return f"{_duckdb_type(arrow_type.value_type)}[]"
    if pa.types.is_map(arrow_type):
        key, item = arrow_type.key_type, arrow_type.item_type
        return f"MAP({_duckdb_type(key)}, {_duckdb_type(item)})"
    return _DUCKDB_TYPES[arrow_type]


def _parquet_relation(files: str | list[str], schema: pa.Schema, has_files: bool) -> str:
    """A relation with exactly `schema`'s columns: the files (a glob, or a list of paths), or
    an empty typed relation.

    A table that a release added columns to (evolution.py) may hold files without them: its
    files are read by name, after an empty relation of `schema` that gives every column
    (nulls where a file lacks one, whether or not any file has it yet)."""
    typed = ", ".join(f"NULL::{_duckdb_type(f.type)} AS {f.name}" for f in schema)
    empty = f"(SELECT {typed} WHERE false)"
    if not has_files:
        return empty
    named = (
        sql_literal(files)
        if isinstance(files, str)
        else "[" + ", ".join(sql_literal(path) for path in files) + "]"
    )
    if added_columns(schema):
        return (
            f"(SELECT {column_list(schema)} FROM ({empty} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet({named}, union_by_name = true)))"
        )
    return f"(SELECT {column_list(schema)} FROM read_parquet({named}))"


class Relations:
    """A local data dir's tables, read by glob; `relations_of` gives S3's instead."""

    def __init__(self, data_dir: DataDir) -> None:
        self.data_dir = data_dir

    def table(self, table: StoredTable) -> str:
        """Every stored row of `table`."""
        data_dir = self.data_dir
        base = table.directory(data_dir)
        glob = data_dir.local_glob(base, data_dir.files_pattern(base))
        return _parquet_relation(glob, table.schema, bool(table.files(data_dir)))

    def state(self) -> str:
        """The state files, without their window column."""
        data_dir = self.data_dir
        readable = readable_state_files(data_dir)
        # By glob, so that an account's first sync needs no new view; an older release's
        # files (until the next sync moves them) by name.
        files: str | list[str] = (
            data_dir.local_glob(data_dir.accounts_dir, STATE_FILES_PATTERN)
            if readable == state_files(data_dir)
            else [str(Path(path).resolve()) for path in readable]
        )
        return _parquet_relation(files, SYNC_STATE_VIEW_SCHEMA, bool(readable))

    def connect_file(
        self, path: Path, *, read_only: bool, config: dict[str, Any]
    ) -> duckdb.DuckDBPyConnection:
        """A connection to the database file at `path` (with `config`), on which every
        table can be read."""
        connection = duckdb.connect(str(path), read_only=read_only, config=config)
        self.attach(connection)
        return connection

    def attach(
        self,
        connection: duckdb.DuckDBPyConnection,
        tables: Sequence[StoredTable] = DATA_TABLES,
        *,
        state: bool = True,
    ) -> None:
        """Make `tables` (and the state) readable on `connection` as they are now: nothing to
        do for files read by glob."""


class _S3Relations(Relations):
    """An S3 data dir's tables: Arrow datasets registered on each connection."""

    def connect_file(
        self, path: Path, *, read_only: bool, config: dict[str, Any]
    ) -> duckdb.DuckDBPyConnection:
        path.parent.mkdir(parents=True, exist_ok=True)  # the local cache of the S3 dataset
        config = {**config, "autoinstall_known_extensions": False}  # never from the network
        return super().connect_file(path, read_only=read_only, config=config)

    def table(self, table: StoredTable) -> str:
        return f"(SELECT {column_list(table.schema)} FROM {_raw_name(table)})"

    def state(self) -> str:
        return f"(SELECT {column_list(SYNC_STATE_VIEW_SCHEMA)} FROM {_RAW_STATE})"

    def attach(
        self,
        connection: duckdb.DuckDBPyConnection,
        tables: Sequence[StoredTable] = DATA_TABLES,
        *,
        state: bool = True,
    ) -> None:
        for table in tables:
            self._register(connection, _raw_name(table), table.files(self.data_dir), table.schema)
        if state:
            files = readable_state_files(self.data_dir)
            self._register(connection, _RAW_STATE, files, SYNC_STATE_VIEW_SCHEMA)

    def _register(
        self,
        connection: duckdb.DuckDBPyConnection,
        name: str,
        files: list[PurePath],
        schema: pa.Schema,
    ) -> None:
        """Register `files` (read through pyarrow's filesystem layer) as `name`."""
        import pyarrow.dataset as ds  # here: it imports pandas, which only S3 datasets need

        dataset = ds.dataset(
            [str(path) for path in files],
            schema=schema,
            format="parquet",
            filesystem=self.data_dir.store.filesystem,
        )
        connection.register(name, dataset)


def _raw_name(table: StoredTable) -> str:
    """The name of the Arrow dataset of `table` that an S3 connection registers."""
    return f"_raw_{table.name}"


def relations_of(data_dir: DataDir) -> Relations:
    """How DuckDB reads `data_dir`: by glob when it is local, through Arrow datasets on S3."""
    return Relations(data_dir) if data_dir.is_local else _S3Relations(data_dir)
