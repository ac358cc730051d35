"""What a sync reads of its own stored rows: the latest live versions of an account and
region's images (to compare a full listing with, and to tombstone), and which states have
details. One partition's files at a time, never the whole dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

import duckdb
import pyarrow as pa

from .schema import IMAGE_VERSION_DETAILS_SCHEMA, IMAGE_VERSION_SCHEMA, Row
from .storage import DataDir
from .warehouse import (
    arrow_relation,
    latest_states,
    naming_unreadable_files,
    parquet_relation,
    register_dataset,
)

__all__ = ["described_states", "latest_live_rows"]


def _partition_rows(
    data_dir: DataDir,
    base: PurePath,
    account_id: str,
    region: str,
    schema: pa.Schema,
    sql_over: Callable[[str], str],
    params: list[Any],
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(columns, rows) of `sql_over(relation)`, where relation holds the rows of one account
    and region under `base`; no rows when there are no files.

    Raises DataError naming the file when one of the partition cannot be read.
    """
    partition = data_dir.account_region_dir(base, account_id, region)
    files = data_dir.store.glob(partition, data_dir.MONTH_FILES)
    if not files:
        return [], []
    with duckdb.connect() as connection:
        if data_dir.is_local:
            month_files = data_dir.local_glob(partition, data_dir.MONTH_FILES)
            relation = parquet_relation(month_files, schema, True)
        else:
            name = f"_raw_{base.name}"  # _RAW_VERSIONS or _RAW_DETAILS
            register_dataset(connection, data_dir, name, files, schema)
            relation = arrow_relation(name, schema)
        with naming_unreadable_files(data_dir, lambda: [(path, schema) for path in files]):
            cursor = connection.execute(sql_over(relation), params)
            return [column[0] for column in cursor.description], cursor.fetchall()


def latest_live_rows(
    data_dir: DataDir, account_id: str, region: str, image_names: Iterable[str] | None = None
) -> dict[str, dict[int, Row]]:
    """The stored live versions of some images (all of the account and region's when None):
    image -> version -> row (timestamps in ms)."""
    names = None if image_names is None else sorted(set(image_names))
    result: dict[str, dict[int, Row]] = {name: {} for name in names or ()}
    if names == []:
        return result
    selected = ", ".join(
        f"epoch_ms({f.name}) AS {f.name}" if pa.types.is_timestamp(f.type) else f.name
        for f in IMAGE_VERSION_SCHEMA
    )
    only_named = "" if names is None else " AND list_contains(?, image_name)"
    columns, rows = _partition_rows(
        data_dir,
        data_dir.versions_dir,
        account_id,
        region,
        IMAGE_VERSION_SCHEMA,
        lambda relation: (
            f"SELECT {selected} FROM {latest_states(relation)} WHERE NOT is_deleted "
            f"AND account_id = ? AND region = ?{only_named}"
        ),
        [account_id, region] + ([] if names is None else [names]),
    )
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        result.setdefault(row["image_name"], {})[row["version"]] = row
    return result


def described_states(
    data_dir: DataDir, account_id: str, region: str, image_names: Iterable[str]
) -> dict[str, set[tuple[int, int]]]:
    """The states that have details stored: image -> {(version, last_modified_time ms)}."""
    names = sorted(set(image_names))
    result: dict[str, set[tuple[int, int]]] = {name: set() for name in names}
    if not names:
        return result
    _, rows = _partition_rows(
        data_dir,
        data_dir.details_dir,
        account_id,
        region,
        IMAGE_VERSION_DETAILS_SCHEMA,
        lambda relation: (
            f"SELECT DISTINCT image_name, version, epoch_ms(last_modified_time) FROM {relation} "
            "WHERE list_contains(?, image_name)"
        ),
        [names],
    )
    for name, version, modified_ms in rows:
        result[name].add((version, modified_ms))
    return result
