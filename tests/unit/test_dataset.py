"""The dataset layer: the latest state of each version as pyarrow finds it for the sync, the
same as the SQL views find it; one partition's rows read back; unreadable files named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline import dataset
from pipeline.dataset import described_states, latest_live_rows, latest_states
from pipeline.errors import DataError
from pipeline.model import Row
from pipeline.schema import (
    IMAGE_VERSION_DETAILS_SCHEMA,
    IMAGE_VERSION_SCHEMA,
    rows_to_table,
    table_to_rows,
)
from pipeline.storage import DataDir
from pipeline.warehouse import latest_states as latest_states_sql
from pipeline.warehouse import run_query, scan_connection, versions_relation

ACCOUNT, OTHER_ACCOUNT, REGION = "123456789012", "210987654321", "us-east-1"
T0 = 1_772_366_400_000  # 2026-03-01, ms


def _row(image: str, version: int, *, modified: int, observed: int, **changes: Any) -> Row:
    account = changes.pop("account_id", ACCOUNT)
    arn = f"arn:aws:sagemaker:{REGION}:{account}:image"
    return {
        "account_id": account,
        "region": REGION,
        "image_name": image,
        "version": version,
        "image_arn": f"{arn}/{image}",
        "image_version_arn": f"{arn}-version/{image}/{version}",
        "status": "CREATED",
        "failure_reason": None,
        "creation_time": T0,
        "last_modified_time": T0 + modified,
        "is_deleted": False,
        "observed_at": T0 + observed,
    } | changes


# Written in three files, each a later sync's; every case of the rule is a version of "a".
FIRST_SYNC = [
    _row("a", 1, modified=1, observed=10),  # observed later below: the later wins
    _row("a", 2, modified=1, observed=10),  # deleted later below: gone
    _row("a", 3, modified=1, observed=10, status="CREATING"),
    _row("a", 3, modified=2, observed=10),  # same observation, modified later: this one
    _row("a", 4, modified=1, observed=10),
    _row("a", 4, modified=1, observed=10, is_deleted=True),  # a full tie but for the tombstone
    _row("a", 5, modified=1, observed=10, is_deleted=True),
    _row("b", 1, modified=1, observed=10),
    _row("b", 1, modified=1, observed=10, account_id=OTHER_ACCOUNT),
]
SECOND_SYNC = [
    _row("a", 1, modified=5, observed=20, status="CREATE_FAILED", failure_reason="boom"),
    _row("a", 2, modified=1, observed=20, is_deleted=True),
    _row("a", 5, modified=7, observed=20),  # deleted, then back: live again
]
THIRD_SYNC = [_row("a", 6, modified=9, observed=30), _row("c", 1, modified=9, observed=30)]
LIVE = {("a", 1): SECOND_SYNC[0], ("a", 3): FIRST_SYNC[3], ("a", 5): SECOND_SYNC[2]}
LIVE |= {("a", 6): THIRD_SYNC[0], ("b", 1): FIRST_SYNC[7], ("c", 1): THIRD_SYNC[1]}


@pytest.fixture
def stored(tmp_path: Path) -> DataDir:
    data_dir = DataDir(tmp_path / "data")
    data_dir.prepare()
    for rows in (FIRST_SYNC, SECOND_SYNC, THIRD_SYNC):
        data_dir.write_versions(rows_to_table(rows))
    return data_dir


def _as_ms(rows: list[tuple[Any, ...]], columns: list[str]) -> list[Row]:
    """DuckDB's rows of versions as the sync's rows (timestamps in ms)."""
    table = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in rows])
    return table_to_rows(table.cast(IMAGE_VERSION_SCHEMA))


def _sorted(rows: list[Row]) -> list[Row]:
    return sorted(
        rows, key=lambda row: tuple(str(row[name]) for name in IMAGE_VERSION_SCHEMA.names)
    )


def test_the_sync_and_the_views_pick_the_same_latest_state_ties_and_tombstones_included(
    stored: DataDir,
) -> None:
    everything = rows_to_table([*FIRST_SYNC, *SECOND_SYNC, *THIRD_SYNC])
    by_pyarrow = table_to_rows(latest_states(everything))
    with scan_connection(stored) as connection:
        cursor = connection.execute(f"SELECT * FROM {latest_states_sql(versions_relation(stored))}")
        columns = [column[0] for column in cursor.description]
        by_sql = _as_ms(cursor.fetchall(), columns)
    assert _sorted(by_pyarrow) == _sorted(by_sql)
    assert len(by_pyarrow) == 9  # a1 to a6, b1 in two accounts, c1


def test_latest_live_rows_are_the_image_versions_view_of_the_account_and_region(
    stored: DataDir,
) -> None:
    live = latest_live_rows(stored, ACCOUNT, REGION)
    assert {
        (name, version): row for name, rows in live.items() for version, row in rows.items()
    } == LIVE
    view = run_query(stored, f"SELECT * FROM image_versions WHERE account_id = '{ACCOUNT}'")
    assert _sorted(_as_ms(view.rows, view.columns)) == _sorted(list(LIVE.values()))


def test_latest_live_rows_of_named_images_only(stored: DataDir) -> None:
    live = latest_live_rows(stored, ACCOUNT, REGION, ["b", "c", "never-stored"])
    assert live == {"b": {1: FIRST_SYNC[7]}, "c": {1: THIRD_SYNC[1]}, "never-stored": {}}
    assert latest_live_rows(stored, ACCOUNT, REGION, []) == {}
    assert latest_live_rows(stored, ACCOUNT, "eu-west-1") == {}


def test_latest_live_rows_reduced_file_by_file_are_the_same(
    stored: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = latest_live_rows(stored, ACCOUNT, REGION)
    monkeypatch.setattr(dataset, "_REDUCE_ROWS", 1)  # reduce after every file
    assert latest_live_rows(stored, ACCOUNT, REGION) == whole


def test_described_states_are_the_stored_details_of_the_named_images(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    data_dir.prepare()
    details = {name: None for name in IMAGE_VERSION_DETAILS_SCHEMA.names} | {"aliases": []}
    rows = [
        details | {k: v for k, v in row.items() if k in details}
        for row in (FIRST_SYNC[0], SECOND_SYNC[0], FIRST_SYNC[7], FIRST_SYNC[8])
    ]
    data_dir.write_details(rows_to_table(rows, IMAGE_VERSION_DETAILS_SCHEMA))
    found = described_states(data_dir, ACCOUNT, REGION, ["a", "b", "c"])
    assert {name: described.states for name, described in found.items()} == {
        "a": {(1, T0 + 1), (1, T0 + 5)},
        "b": {(1, T0 + 1)},
        "c": set(),
    }
    assert found["a"].aliases == {1: frozenset()} and found["c"].aliases == {}


def test_a_versions_aliases_are_those_of_its_latest_details(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    data_dir.prepare()
    details = {name: None for name in IMAGE_VERSION_DETAILS_SCHEMA.names}
    row = details | {k: v for k, v in FIRST_SYNC[0].items() if k in details}
    later = {**row, "observed_at": row["observed_at"] + 10, "aliases": ["stable"]}
    for stored in (later, {**row, "aliases": ["old"]}):  # the older one written last
        data_dir.write_details(rows_to_table([stored], IMAGE_VERSION_DETAILS_SCHEMA))
    (found,) = described_states(data_dir, ACCOUNT, REGION, ["a"]).values()
    assert found.aliases == {1: frozenset({"stable"})}


def test_an_unreadable_file_of_the_partition_is_named_with_its_repair(stored: DataDir) -> None:
    first = sorted(stored.version_files())[0]
    Path(first).write_bytes(b"not parquet")
    with pytest.raises(DataError) as raised:
        latest_live_rows(stored, ACCOUNT, REGION)
    message = str(raised.value)
    assert str(first.relative_to(stored.root)) in message
    assert "image-versions verify --repair" in message
