"""Round trip: what one sync of a small seeded catalogue writes, file by file, and that the
version rows read back are exactly the rows the source's versions normalise to."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.emulator import DEFAULT_ACCOUNT_ID, EmulatorServer, seed_catalogue
from pipeline.model import account_key, target_key
from pipeline.schema import IMAGE_VERSION_SCHEMA, arn_account_region, rows_to_table, version_row
from pipeline.storage import DataDir
from tests.support import REGION, run_sync

# A data file's name is random (`part-<uuid4 hex>.parquet`, `run-<...>`); the rest is fixed.
PART = re.compile(r"/(part|run)-[0-9a-f]{32}\.parquet")
PART_NAME = "part-<hex>.parquet"
RUN_NAME = "run-<hex>.parquet"
KEY = target_key("default", REGION)
TARGET = f"_state/targets/{KEY}"
ACCOUNT = f"_state/accounts/{account_key(DEFAULT_ACCOUNT_ID, REGION)}"
THIS_MONTH = datetime.now(UTC).strftime("%Y-%m")
ORDER = [("image_name", "ascending"), ("version", "ascending"), ("observed_at", "ascending")]


def written_files(data_dir: DataDir) -> list[str]:
    """Every file under the data dir, relative to it, the random part of names masked."""
    root = Path(data_dir.root)
    relative = (path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    return sorted(PART.sub(r"/\1-<hex>.parquet", name) for name in relative)


def read_versions(data_dir: DataDir) -> pa.Table:
    """Every version file read back with pyarrow, as stored, sorted by version and time."""
    root = Path(data_dir.root)
    files = sorted(root.glob("image_versions/*/*/*.parquet"))
    assert files
    tables = [pq.ParquetFile(path).read() for path in files]
    return pa.concat_tables(tables).sort_by(ORDER)


def test_a_first_sync_writes_exactly_the_layout_and_reads_back_the_source(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=5, images=4, region=REGION)
    live = server.emulator.live_versions(REGION)
    # A long commit interval: the sync commits once, so each partition gets one file.
    report = run_sync(data_dir, server, commit_interval_s=3600)
    assert report.ok and report.new == len(live) == report.rows_written

    partitions: set[tuple[str, str]] = set()
    months: set[tuple[str, str, str]] = set()
    for version in live:
        account_region = arn_account_region(version["ImageArn"])
        assert account_region is not None
        partitions.add(account_region)
        month = version["LastModifiedTime"].astimezone(UTC).strftime("%Y-%m")
        months.add((*account_region, month))
    assert len(months) >= 2  # the seeded history spans months: more than one partition
    expected_files = [
        ".image-versions",  # the marker: the directory is ours
        f"{TARGET}/.lock",  # the target's writer lock (a local OS lock file; it stays)
        f"{TARGET}/account.json",  # the account and region the target reached
        f"{ACCOUNT}/.lock",  # the account's owner lock (a local OS lock file; it stays)
        f"{ACCOUNT}/images.parquet",  # the account's watermarks
        # no images.previous.parquet: a sync keeps the state it starts from, and a first
        # sync starts from none
        f"sync_runs/target={KEY}/month={THIS_MONTH}/{RUN_NAME}",  # the sync's history row
        *(f"images/account_region={a}.{r}/images.parquet" for a, r in partitions),
        *(f"image_versions/account_region={a}.{r}/month={m}/{PART_NAME}" for a, r, m in months),
        "warehouse.duckdb",  # the views (no .wal: closed cleanly)
        "warehouse.duckdb.lock",  # refreshes of the views take turns (an OS lock file; it stays)
    ]
    assert written_files(data_dir) == sorted(expected_files)

    stored = read_versions(data_dir)
    observed = set(stored.column("observed_at").cast(pa.int64()).to_pylist())
    assert len(observed) == 1  # one sync, one observed time for every row
    (observed_at_ms,) = observed
    expected = rows_to_table(
        version_row(
            version["ImageName"],
            version,
            observed_at_ms=observed_at_ms,
            image_account_region=(arn_account_region(version["ImageArn"]) or ("", "")),
        )
        for version in live
    ).sort_by(ORDER)
    assert stored.schema == IMAGE_VERSION_SCHEMA
    assert stored.equals(expected)

    # A second sync with nothing changed writes no version file; it keeps the state it
    # started from as the previous state.
    again = run_sync(data_dir, server, commit_interval_s=3600)
    assert again.ok and again.new == again.changed == again.deleted == again.rows_written == 0
    runs = [f"sync_runs/target={KEY}/month={THIS_MONTH}/{RUN_NAME}"] * 2
    assert written_files(data_dir) == sorted(
        [*expected_files, *runs[1:], f"{ACCOUNT}/images.previous.parquet"]
    )
    assert read_versions(data_dir).equals(stored)
