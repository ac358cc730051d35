"""`dg dev` at the repository root, offline, with the repository's dagster.yaml (its run queue)
copied into a DAGSTER_HOME under the test's tmp_path: the UI's GraphQL lists the assets; runs
of two partitions (as a fanned-out backfill makes them) run side by side, in two processes,
and together sync the emulator into one data dir; two runs of one partition, launched
together, run one after the other (one writer per target)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pytest

from benchmarks.dagster_ui import DagsterDev, dagster_dev, tags_of, wait_for
from pipeline.emulator import EmulatorServer
from tests.support import OTHER_REGION, REGION, SYNC_OP

pytestmark = pytest.mark.dagster

ASSETS = ["image_versions", "image_versions_warehouse", "sagemaker_images"]
JOB = "sync_image_versions"
PARTITION = "dagster/partition"


def launched_side_by_side(dev: DagsterDev, runs: list[dict[str, Any]]) -> bool:
    """Whether the queue launched each run before the other one had ended."""
    first, second = runs
    return bool(
        dev.launched_at(first["runId"]) < second["endTime"]
        and dev.launched_at(second["runId"]) < first["endTime"]
    )


def test_two_partitions_run_side_by_side_and_one_target_has_one_writer(
    server: EmulatorServer, sources_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "IMAGE_VERSIONS_CONFIG": str(sources_file),
        "IMAGE_VERSIONS_DATA_DIR": str(data),
    }
    with (tmp_path / "dg-dev.log").open("w") as log, dagster_dev(tmp_path, env, log, "dg") as dev:
        assert dev.asset_names() == ASSETS
        # Two partitions at once, as a fanned-out backfill makes them (its policy is tested
        # with the definitions; launching directly spares the backfill daemon's 30 s pass).
        keys = [f"emu/{region}" for region in sorted((REGION, OTHER_REGION))]
        for key in keys:
            dev.launch_run(JOB, {PARTITION: key})
        fanned = wait_for("the partitions' runs", lambda: dev.finished_runs(2), timeout=120)
        assert [run["status"] for run in fanned] == ["SUCCESS", "SUCCESS"]
        assert sorted(tags_of(run)[PARTITION] for run in fanned) == keys
        assert launched_side_by_side(dev, fanned), "a target's queue held the other's run"
        expected = sum(len(server.emulator.live_versions(r)) for r in (REGION, OTHER_REGION))
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            assert con.sql("SELECT count(*) FROM image_versions").fetchall() == [(expected,)]

        # Two runs of one target, launched together (as two clicks on "Materialize" would):
        # the queue starts the second once the first is over, so neither fails on the lock.
        one = {PARTITION: f"emu/{REGION}"}
        config = {"ops": {SYNC_OP: {"config": {"wait_seconds": 0}}}}
        for _ in range(2):
            dev.launch_run(JOB, one, run_config=config)
        runs = wait_for("the two runs", lambda: dev.finished_runs(4), timeout=120)
        latest, previous = runs[0], runs[1]
        assert [latest["status"], previous["status"]] == ["SUCCESS", "SUCCESS"]
        assert previous["endTime"] <= latest["startTime"]
