"""Refreshing the warehouse views from several processes at once (two partitions of one dataset
finishing side by side), and with readers holding the file open."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest
from filelock import FileLock

from pipeline.emulator import EmulatorServer
from pipeline.errors import ConfigError
from pipeline.storage import DataDir
from pipeline.warehouse import refresh_views
from tests.support import live_rows, run_sync, truth

PROCESSES = 4
# Processes that refresh one data dir at once, forked from a launcher that imported the code
# once (four imports would cost seconds of CPU); it forks before it has started a thread of its
# own or opened DuckDB, so each child starts clean.
REFRESHERS = """
import json, multiprocessing, sys
from pathlib import Path
from pipeline.storage import DataDir
from pipeline.warehouse import refresh_views

count, root = int(sys.argv[1]), Path(sys.argv[2])

def refresh(barrier, wrote):
    barrier.wait(timeout=60)
    wrote.put(refresh_views(DataDir(root)))

context = multiprocessing.get_context("fork")
barrier, wrote = context.Barrier(count), context.Queue()
processes = [context.Process(target=refresh, args=(barrier, wrote)) for _ in range(count)]
for process in processes:
    process.start()
for process in processes:
    process.join(timeout=60)
exit_codes = [process.exitcode for process in processes]
outcomes = sorted(wrote.get(timeout=5) for code in exit_codes if code == 0)
print(json.dumps({"exit_codes": exit_codes, "wrote": outcomes}))
"""
# An analyst's session: DuckDB's default read-write open, one answer before and one after.
ANALYST = """
import sys, duckdb
with duckdb.connect(sys.argv[1]) as connection:
    count = "SELECT count(*) FROM image_versions"
    print(connection.execute(count).fetchone()[0], flush=True)
    sys.stdin.readline()
    print(connection.execute(count).fetchone()[0], flush=True)
"""


def synced(server: EmulatorServer, data_dir: DataDir, versions: int) -> None:
    emulator = server.emulator
    if "alpha" not in emulator.image_names():
        emulator.create_image("alpha")
    for _ in range(versions):
        emulator.create_image_version("alpha")
    assert run_sync(data_dir, server).ok


def refresh_lock(data_dir: DataDir) -> FileLock:
    path = data_dir.warehouse_path
    return FileLock(path.with_name(path.name + ".lock"))


def test_processes_refreshing_at_once_all_succeed_and_one_writes(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir, versions=3)
    data_dir.warehouse_path.unlink()  # every process finds the views missing

    launched = subprocess.run(
        [sys.executable, "-c", REFRESHERS, str(PROCESSES), str(data_dir.root)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )

    assert launched.returncode == 0, launched.stderr
    outcome = json.loads(launched.stdout)
    assert outcome["exit_codes"] == [0] * PROCESSES, launched.stderr
    assert outcome["wrote"] == [False] * (PROCESSES - 1) + [True]
    assert sorted(live_rows(data_dir)) == sorted(truth(server.emulator))
    assert refresh_views(data_dir) is False


def test_current_views_need_no_lock_and_stale_ones_wait_a_bounded_time(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir, versions=2)
    with refresh_lock(data_dir):  # another process is refreshing
        assert refresh_views(data_dir, lock_timeout_s=0.2) is False
        data_dir.warehouse_path.unlink()
        started = time.monotonic()
        with pytest.raises(ConfigError, match="another process has been refreshing the views"):
            refresh_views(data_dir, lock_timeout_s=0.2)
        assert time.monotonic() - started < 5
    assert refresh_views(data_dir) is True


def test_a_sync_refreshes_the_views_under_an_open_analyst_session(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir, versions=0)  # the views know no version file yet
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(data_dir.warehouse_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        assert analyst.stdout is not None and analyst.stdin is not None
        assert analyst.stdout.readline() == "0\n"

        synced(server, data_dir, versions=2)  # the first version files: new views

        assert sorted(live_rows(data_dir)) == sorted(truth(server.emulator))
        later, errors = analyst.communicate("\n", timeout=30)
    finally:
        analyst.kill()
    assert (analyst.returncode, later) == (0, "0\n"), errors  # its own file, unchanged
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM image_versions").fetchone() == (2,)
