"""`dagster dev` at the repository root, offline, with the repository's dagster.yaml (its run
queue) copied into a DAGSTER_HOME under the test's tmp_path: the UI's GraphQL lists the assets, a
backfill of every partition of every asset is exactly one run that syncs the emulator, and
two backfills at once run one after the other (one writer per data dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.emulator import EmulatorServer
from tests.support import OTHER_REGION, REGION

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ["sagemaker_images", "image_versions", "image_versions_warehouse"]


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME of the test's own holding a copy of the repository's dagster.yaml, so
    the instance is the project's (storage, run queue) but nothing lands in the repository."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]  # type: ignore[no-any-return]


def wait_for(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def backfill_all(port: int) -> None:
    """A backfill of every partition of every asset, through the UI's GraphQL."""
    selection = ", ".join(f'{{path: ["{name}"]}}' for name in ASSETS)
    launched = graphql(
        port,
        f"mutation {{ launchPartitionBackfill(backfillParams: "
        f"{{assetSelection: [{selection}], allPartitions: true}}) "
        "{ __typename ... on LaunchBackfillSuccess { backfillId } } }",
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched


def test_dagster_dev_lists_the_assets_and_a_full_backfill_is_one_run(
    server: EmulatorServer,
    sources_file: Path,
    dagster_home: Path,
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = dict(
        os.environ,
        DAGSTER_HOME=str(dagster_home),
        DAGSTER_STORAGE_DIR=str(tmp_path / "dagster"),
        IMAGE_VERSIONS_CONFIG=str(sources_file),
        IMAGE_VERSIONS_DATA_DIR=str(data),
    )
    log = (tmp_path / "dagster-dev.log").open("w")
    dagster = Path(sys.executable).parent / "dagster"
    process = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        nodes = wait_for(
            "the webserver",
            lambda: graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"],
            timeout=120,
        )
        assert sorted(node["assetKey"]["path"][0] for node in nodes) == sorted(ASSETS)
        backfill_all(port)

        def finished_runs() -> list[dict[str, Any]] | None:
            runs = graphql(
                port, "{ runsOrError { ... on Runs { results { status startTime endTime } } } }"
            )
            results = runs["runsOrError"]["results"]
            done = results and all(r["status"] in {"SUCCESS", "FAILURE"} for r in results)
            return results if done else None

        runs = wait_for("the backfill's run", finished_runs, timeout=150)
        time.sleep(3)  # a second run, if the backfill made one, would have been queued by now
        runs = finished_runs() or runs
        assert [r["status"] for r in runs] == ["SUCCESS"]
        expected = sum(len(server.emulator.live_versions(r)) for r in (REGION, OTHER_REGION))
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            assert con.sql("SELECT count(*) FROM image_versions").fetchall() == [(expected,)]

        # Two more at once: the instance queues this location's runs one at a time, so
        # neither fails on the data dir's writer lock.
        backfill_all(port)
        backfill_all(port)
        runs = wait_for(
            "two more runs", lambda: (r := finished_runs()) and len(r) == 3 and r, timeout=240
        )
        assert [r["status"] for r in runs] == ["SUCCESS"] * 3
        latest, previous = runs[0], runs[1]  # newest first
        assert previous["endTime"] <= latest["startTime"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
