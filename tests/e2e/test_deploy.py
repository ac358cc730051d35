"""deploy/ as a production deployment runs it, on this machine: a PostgreSQL server, the code
location's gRPC code server, the webserver and the daemon, each a process, with
deploy/dagster.yaml and deploy/workspace.yaml as they are. A backfill launched through the
webserver's GraphQL (as the UI launches it) fans out into one run per partition, which the
queue starts and the code server runs; together they sync the emulator into one data dir,
and the instance's runs are in PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from assets.definitions import PARTITIONS_PER_RUN_ENV
from assets.schedules import RANGE_END, RANGE_START
from benchmarks.dagster_deploy import deployment, postgres, postgres_binaries
from benchmarks.dagster_ui import BACKFILL_TAG, tags_of, wait_for
from pipeline.emulator import EmulatorServer
from pipeline.storage import DataDir
from tests.support import OTHER_REGION, REGION, assert_converged

pytestmark = [pytest.mark.dagster, pytest.mark.deploy]

SYNC_ASSETS = ("image_versions", "sagemaker_images")


@pytest.fixture
def postgres_bin() -> Path:
    """PostgreSQL's server binaries; their absence skips, except in CI, where it fails."""
    found = postgres_binaries()
    if found is None:
        reason = "PostgreSQL's server binaries (initdb, postgres) are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must have them")
        pytest.skip(reason)
    return found


def test_a_backfill_through_the_deployment_syncs_every_partition_in_runs_of_its_own(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, postgres_bin: Path
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "IMAGE_VERSIONS_CONFIG": str(sources_file),
        "IMAGE_VERSIONS_DATA_DIR": str(data),
        PARTITIONS_PER_RUN_ENV: "1",
    }
    keys = [f"emu/{region}" for region in sorted((REGION, OTHER_REGION))]
    with contextlib.ExitStack() as stack:
        log = stack.enter_context((tmp_path / "deploy.log").open("w"))
        database = stack.enter_context(postgres(postgres_bin, log))
        deployed = stack.enter_context(deployment(tmp_path, env, database, log, daemon=False))
        backfill = deployed.webserver.launch_backfill(SYNC_ASSETS, keys)
        # The daemon's first pass over backfills comes at its start (later ones every 30 s):
        # started now, it creates the backfill's runs at once.
        deployed.start_daemon()
        runs = wait_for(
            "the backfill's runs",
            lambda: deployed.webserver.finished_runs(len(keys), {BACKFILL_TAG: backfill}),
            timeout=150,
        )
        assert [run["status"] for run in runs] == ["SUCCESS"] * len(keys)
        ranges = sorted((tags_of(run)[RANGE_START], tags_of(run)[RANGE_END]) for run in runs)
        assert ranges == [(key, key) for key in keys]
        with contextlib.closing(database.connect(database.database)) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone() == (len(keys),)
    assert_converged(DataDir(data), server.emulator, (REGION, OTHER_REGION))
