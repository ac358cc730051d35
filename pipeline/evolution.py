"""Files written before a release added columns to their table (`schema.ADDED_COLUMNS`).

Every reader takes such a file as holding nulls in the added columns: the sync's own reads
and compaction (`read_file`), `verify`, and the views (relations.py), so that a data dir
keeps working across the upgrade with nothing rewritten. A file holding anything else (a
column missing that was never added later, a type changed) is still refused.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import ADDED_COLUMNS

__all__ = ["added_columns", "earlier_form", "read_file", "widen"]


def added_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The columns a release added to `schema` (none for most)."""
    for known, names in ADDED_COLUMNS:
        if known.equals(schema, check_metadata=False):
            return names
    return ()


def earlier_form(schema: pa.Schema) -> pa.Schema | None:
    """`schema` as files written before its added columns hold it; None when it has none."""
    added = added_columns(schema)
    return pa.schema([f for f in schema if f.name not in added]) if added else None


def widen(table: pa.Table, schema: pa.Schema, names: list[str] | None = None) -> pa.Table:
    """`names` (all of `schema`'s when None) of `table`, in that order, the ones it lacks
    as nulls of their type in `schema`."""
    columns = [
        table.column(name)
        if name in table.column_names
        else pa.nulls(table.num_rows, schema.field(name).type)
        for name in (schema.names if names is None else names)
    ]
    fields = [schema.field(name) for name in (schema.names if names is None else names)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def read_file(
    parquet: pq.ParquetFile, schema: pa.Schema, columns: list[str] | None = None
) -> pa.Table | None:
    """`columns` (all when None) of an open Parquet file as `schema` has them: the file holds
    `schema`, or its earlier form (then the added columns read as nulls). None when it holds
    neither."""
    found = parquet.schema_arrow
    if found.equals(schema, check_metadata=False):
        return parquet.read(columns=columns)
    earlier = earlier_form(schema)
    if earlier is None or not found.equals(earlier, check_metadata=False):
        return None
    wanted = schema.names if columns is None else columns
    table = parquet.read(columns=[name for name in wanted if name in earlier.names])
    return widen(table, schema, wanted)
