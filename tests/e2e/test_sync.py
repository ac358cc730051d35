"""End to end: real boto3 over HTTP to the emulator, real Parquet files, real DuckDB views."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.allocator import ARROW_POOL_ENV
from pipeline.emulator import EmulatorServer, random_mutations, seed_catalogue
from pipeline.schema import IMAGE_VERSION_SCHEMA
from pipeline.state import state_files
from pipeline.storage import DataDir
from tests.support import (
    REGION,
    assert_converged,
    history_duplicates,
    live_rows,
    run_sync,
    truth,
)


def list_version_calls(server: EmulatorServer) -> list[dict]:
    return [p for op, p in server.emulator.requests() if op == "ListImageVersions"]


def test_first_sync_copies_the_whole_catalogue(server: EmulatorServer, data_dir: DataDir) -> None:
    seed_catalogue(server.emulator, seed=1, images=8)
    report = run_sync(data_dir, server)
    assert report.ok, report.failures
    assert report.new == len(truth(server.emulator)) > 300
    assert_converged(data_dir, server.emulator)


@pytest.fixture
def arrow_pool() -> Iterator[None]:
    """pyarrow's default pool is the process's: put back the one the test found."""
    found = pa.default_memory_pool()
    yield
    pa.set_memory_pool(found)


@pytest.mark.usefixtures("arrow_pool")
@pytest.mark.parametrize("chosen", [None, "mimalloc"])
def test_a_sync_allocates_from_the_system_allocator_unless_the_user_chose_one(
    server: EmulatorServer, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch, chosen: str | None
) -> None:
    pa.set_memory_pool(pa.mimalloc_memory_pool())  # pyarrow's own default on most platforms
    if chosen is None:
        monkeypatch.delenv(ARROW_POOL_ENV, raising=False)
    else:
        monkeypatch.setenv(ARROW_POOL_ENV, chosen)
    seed_catalogue(server.emulator, seed=1, images=3)
    assert run_sync(data_dir, server).ok
    assert pa.default_memory_pool().backend_name == (chosen or "system")


# What the processes this project starts choose before pyarrow is imported: its C++ code's
# default pool too, which a later switch cannot reach.
_POOL_OF_THE_COMMAND = (
    "import pipeline.cli as cli\n"
    "cli.main = lambda: print(__import__('pyarrow').default_memory_pool().backend_name) or 0\n"
    "cli.run()"
)
_POOL_OF_THE_CODE_LOCATION = (
    "import assets.definitions, pyarrow\nprint(pyarrow.default_memory_pool().backend_name)"
)


@pytest.mark.parametrize("chosen", [None, "mimalloc"])
@pytest.mark.parametrize(
    "process",
    [_POOL_OF_THE_COMMAND, _POOL_OF_THE_CODE_LOCATION],
    ids=["command", "code-location"],
)
def test_the_command_and_the_code_location_choose_the_allocator_before_pyarrow_loads(
    process: str, chosen: str | None
) -> None:
    env = {name: value for name, value in os.environ.items() if name != ARROW_POOL_ENV}
    if chosen is not None:
        env[ARROW_POOL_ENV] = chosen
    printed = subprocess.run(
        [sys.executable, "-P", "-c", process],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert printed.split() == [chosen or "system"]


def test_sync_mutate_sync_cycles_equal_the_source_field_by_field(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=2, images=10)
    rng = random.Random(2)
    run_sync(data_dir, server)
    for _ in range(6):
        random_mutations(server.emulator, rng, 8)
        server.emulator.clock.advance(30)
        assert run_sync(data_dir, server, reconcile=True).ok
        assert_converged(data_dir, server.emulator)


def test_a_no_change_sync_makes_one_listing_call_per_image(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=3, images=9)
    run_sync(data_dir, server)
    server.emulator.clear_requests()
    report = run_sync(data_dir, server)
    calls = list_version_calls(server)
    assert len(calls) == len(server.emulator.image_names()) == report.images
    assert {c["MaxResults"] for c in calls} == {100}
    with_versions = {v["ImageName"] for v in server.emulator.live_versions()}
    assert all("LastModifiedTimeAfter" in c for c in calls if c["ImageName"] in with_versions)
    list_images = [p for op, p in server.emulator.requests() if op == "ListImages"]
    assert len(list_images) == 1 and list_images[0]["MaxResults"] == 100
    assert (report.new, report.changed, report.deleted, report.rows_written) == (0, 0, 0, 0)


def test_ties_at_the_watermark_are_neither_lost_nor_duplicated(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    emulator.create_image("tied")
    for _ in range(3):
        emulator.create_image_version("tied")
    run_sync(data_dir, server, lookback_minutes=0)
    # Same millisecond as the watermark: only the inclusive filter finds these.
    for _ in range(2):
        emulator.create_image_version("tied")
    report = run_sync(data_dir, server, lookback_minutes=0)
    assert (report.new, report.changed) == (2, 0)
    assert_converged(data_dir, emulator)
    assert len(live_rows(data_dir)) == 5


def test_late_updates_inside_the_lookback_are_caught_and_beyond_it_by_reconcile(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    emulator.create_image("late")
    for _ in range(4):
        emulator.create_image_version("late")
        emulator.clock.advance(60)
    newest = emulator.clock.now()
    emulator.create_image_version("late")
    run_sync(data_dir, server)
    # Stamped 5 minutes before the watermark: inside the default 10-minute lookback.
    emulator.update_image_version(
        "late",
        3,
        status="DELETE_FAILED",
        failure_reason="in use",
        last_modified_time=newest - timedelta(minutes=5),
    )
    assert run_sync(data_dir, server).changed == 1
    assert_converged(data_dir, emulator)
    # Stamped an hour before: invisible to incremental listings, caught by reconciliation.
    emulator.update_image_version(
        "late", 1, status="DELETE_FAILED", last_modified_time=newest - timedelta(hours=1)
    )
    assert run_sync(data_dir, server).changed == 0
    assert truth(emulator) != set(live_rows(data_dir))
    assert run_sync(data_dir, server, reconcile=True).changed == 1
    assert_converged(data_dir, emulator)


def test_deleted_versions_are_caught_by_reconcile(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=4, images=6)
    run_sync(data_dir, server)
    name = max(
        server.emulator.image_names(),
        key=lambda n: len([v for v in server.emulator.live_versions() if v["ImageName"] == n]),
    )
    server.emulator.delete_image_version(name, 2)
    assert run_sync(data_dir, server).deleted == 0  # incremental listings cannot see it
    report = run_sync(data_dir, server, reconcile=True)
    assert report.deleted == 1
    assert_converged(data_dir, server.emulator)
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as con:
        tomb = con.execute(
            "SELECT status, last_modified_time IS NOT NULL FROM image_version_history "
            "WHERE image_name = ? AND version = 2 AND is_deleted",
            [name],
        ).fetchall()
    assert len(tomb) == 1 and tomb[0][1]


def test_a_deleted_image_is_tombstoned_by_a_plain_sync(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=5, images=6)
    run_sync(data_dir, server)
    victim = next(
        n
        for n in server.emulator.image_names()
        if any(v["ImageName"] == n for v in server.emulator.live_versions())
    )
    versions = len([v for v in server.emulator.live_versions() if v["ImageName"] == victim])
    server.emulator.delete_image(victim)
    report = run_sync(data_dir, server)
    assert report.ok and report.deleted == versions
    assert_converged(data_dir, server.emulator)
    # Tombstones are written once, not on every later sync.
    assert run_sync(data_dir, server).deleted == 0


def test_throttling_on_30_percent_of_calls_still_converges(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=6, images=10)
    server.emulator.faults.throttle_rate = 0.3
    server.emulator.faults.seed = 6
    report = run_sync(data_dir, server)
    assert report.ok, report.failures
    assert report.stats.throttled > 0
    assert_converged(data_dir, server.emulator)


def test_the_dataset_reads_as_is_with_pyarrow_pandas_polars_and_duckdb(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=7, images=5)
    run_sync(data_dir, server)
    expected = len(truth(server.emulator))
    root = data_dir.versions_dir
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == expected
    assert table.schema.names[: len(IMAGE_VERSION_SCHEMA)] == IMAGE_VERSION_SCHEMA.names
    assert table.schema.field("account_id").type == IMAGE_VERSION_SCHEMA.field("account_id").type
    assert len(pd.read_parquet(root)) == expected
    assert pl.read_parquet(f"{root}/**/*.parquet", hive_partitioning=True).height == expected
    count = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert count == [(expected,)]
    assert all(p.suffix == ".parquet" for p in root.rglob("*") if p.is_file())


def test_compaction_keeps_every_view_equal(server: EmulatorServer, data_dir: DataDir) -> None:
    seed_catalogue(server.emulator, seed=8, images=6)
    rng = random.Random(8)
    for _ in range(5):
        run_sync(data_dir, server, reconcile=True)
        random_mutations(server.emulator, rng, 5)
    views = ("image_versions", "image_version_history", "images", "sync_state")

    def snapshot() -> dict[str, list]:
        with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as con:
            return {v: sorted(map(repr, con.sql(f"SELECT * FROM {v}").fetchall())) for v in views}

    before = snapshot()

    def files() -> int:
        return len(data_dir.version_files()) + len(data_dir.sync_run_files())

    files_before = files()
    assert data_dir.compact() == (files_before, files())
    assert len(data_dir.version_files()) < files_before
    assert snapshot() == before
    assert history_duplicates(data_dir) == 0


def test_only_named_images_are_synced(server: EmulatorServer, data_dir: DataDir) -> None:
    seed_catalogue(server.emulator, seed=9, images=6)
    chosen = sorted(server.emulator.image_names())[:2]
    report = run_sync(data_dir, server, image_names=frozenset(chosen))
    assert report.images == 2
    assert {r[1] for r in live_rows(data_dir)} <= set(chosen)
    assert {p["ImageName"] for p in list_version_calls(server)} == set(chosen)


@pytest.mark.parametrize("region", ["eu-west-1"])
def test_regions_are_kept_apart(server: EmulatorServer, data_dir: DataDir, region: str) -> None:
    server.emulator.create_image("east", region=REGION)
    server.emulator.create_image_version("east", region=REGION)
    server.emulator.create_image("west", region=region)
    server.emulator.create_image_version("west", region=region)
    run_sync(data_dir, server)
    run_sync(data_dir, server, region=region)
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT region, image_name FROM image_versions ORDER BY 1").fetchall()
    assert rows == [(region, "west"), (REGION, "east")]


def test_an_image_deleted_between_listing_and_its_versions_fails_alone(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=10, images=6)
    run_sync(data_dir, server)
    victim = next(
        n
        for n in emulator.image_names()
        if any(v["ImageName"] == n for v in emulator.live_versions())
    )
    kept = len(truth(emulator)) - len(
        [v for v in emulator.live_versions() if v["ImageName"] == victim]
    )
    emulator.create_image_version(next(n for n in emulator.image_names() if n != victim))

    def delete_victim(operation: str, params: dict) -> None:
        if operation == "ListImageVersions" and params.get("ImageName") == victim:
            emulator.before_request = None
            emulator.delete_image(victim)

    emulator.before_request = delete_victim
    report = run_sync(data_dir, server)
    assert [(f.image_name, "deleted" in f.reason) for f in report.failures] == [(victim, True)]
    assert report.new == 1 and report.deleted > 0
    assert len(live_rows(data_dir)) == kept + 1
    assert_converged(data_dir, server.emulator)


def test_max_rps_holds_across_all_workers(server: EmulatorServer, data_dir: DataDir) -> None:
    seed_catalogue(server.emulator, seed=15, images=40)
    report = run_sync(data_dir, server, max_rps=20.0, concurrency=8)
    calls = report.stats.total_calls
    assert calls > 40
    # A token bucket of 20/s with a one-second burst: no faster than (calls - 20) / 20 seconds.
    assert report.seconds >= (calls - 20) / 20
    assert_converged(data_dir, server.emulator)


def test_a_full_refresh_tombstones_an_image_deleted_while_its_state_was_lost(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """`verify --repair` drops the state; an image deleted meanwhile is known only from its
    stored versions, and the full refresh that follows must still take them out of the view."""
    seed_catalogue(server.emulator, seed=12, images=6)
    run_sync(data_dir, server)
    doomed = sorted(server.emulator.image_names(REGION))[1]
    server.emulator.delete_image(doomed, region=REGION)
    for path in state_files(data_dir):
        Path(path).unlink()
    report = run_sync(data_dir, server, full_refresh=True)
    assert report.ok and report.deleted > 0
    assert_converged(data_dir, server.emulator)
