"""S3 datasets, against moto's S3 server on loopback: same rows as a local data dir, `status`
and `query` without DuckDB's network extensions, the leased writer lock, SIGKILL mid-write,
and the Dagster job with an s3:// DataDirResource."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from assets.definitions import build_definitions
from assets.resources import DataDirResource, SageMakerResource
from assets.schedules import JOB_NAME, RANGE_END, RANGE_START
from pipeline.backends import LOCK_TTL_ENV, S3Store
from pipeline.config import load_config
from pipeline.emulator import EmulatorServer, random_mutations, seed_catalogue
from pipeline.errors import ConfigError
from pipeline.model import target_key
from pipeline.s3lock import LockLost
from pipeline.schema import IMAGE_SCHEMA
from pipeline.storage import DataDir
from pipeline.warehouse import connect
from tests.support import (
    OTHER_REGION,
    REGION,
    S3_LOCK_TTL_S,
    held_listings,
    kill_mid_run,
    run_cli,
    run_sync,
    truth,
)

pytestmark = pytest.mark.s3

LIVE_COLUMNS = (
    "region, image_name, version, image_arn, image_version_arn, status, failure_reason, "
    "epoch_ms(creation_time), epoch_ms(last_modified_time)"
)
TRIALS = 4


def view_rows(data_dir: DataDir, sql: str) -> list[tuple[Any, ...]]:
    with connect(data_dir, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def live(data_dir: DataDir) -> list[tuple[Any, ...]]:
    return view_rows(data_dir, f"SELECT {LIVE_COLUMNS} FROM image_versions ORDER BY ALL")


def history(data_dir: DataDir) -> list[tuple[Any, ...]]:
    return view_rows(
        data_dir, "SELECT * EXCLUDE (observed_at) FROM image_version_history ORDER BY ALL"
    )


def assert_s3_converged(
    data_dir: DataDir, server: EmulatorServer, regions: tuple[str, ...] = (REGION,)
) -> None:
    rows = live(data_dir)
    assert len(rows) == len(set(rows)), "duplicate live versions"
    assert set(rows) == truth(server.emulator, regions)
    states = history(data_dir)
    assert len(states) == len(set(states)), "duplicate states in the history"


def objects(client: Any, data_dir: DataDir, under: str = "") -> list[str]:
    bucket, prefix = data_dir.root.parts[0], "/".join(data_dir.root.parts[1:])
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/{under}"
    )
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def leases(client: Any, data_dir: DataDir) -> list[str]:
    """The writer leases held in the dataset (the dataset's own, each target's)."""
    return [key for key in objects(client, data_dir) if key.endswith("/.lock")]


def sync_args(data_dir: DataDir, server: EmulatorServer, *extra: str) -> list[str]:
    return ["sync", "--data-dir", data_dir.location, "--endpoint-url", server.url, *extra]


def test_s3_sync_matches_the_source_and_a_local_sync_row_for_row(
    server: EmulatorServer, s3_dir: DataDir, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=41, images=8)
    for target in (data_dir, s3_dir):
        assert run_sync(target, server).ok
    rng = random.Random(41)
    random_mutations(server.emulator, rng, 12)
    for target in (data_dir, s3_dir):
        assert run_sync(target, server).ok
    random_mutations(server.emulator, rng, 12)
    for target in (data_dir, s3_dir):
        assert run_sync(target, server, reconcile=True).ok
    assert_s3_converged(s3_dir, server)
    assert live(s3_dir) == live(data_dir)
    assert history(s3_dir) == history(data_dir)
    for view in ("images", "sync_state"):
        sql = f"SELECT * EXCLUDE (last_synced_at) FROM {view} ORDER BY ALL"
        if view == "images":
            sql = f"SELECT * EXCLUDE (observed_at) FROM {view} ORDER BY ALL"
        assert view_rows(s3_dir, sql) == view_rows(data_dir, sql)
    # the same layout, under the prefix
    local_layout = sorted(str(p.relative_to(data_dir.root).parent) for p in data_dir.image_files())
    s3_layout = sorted(str(p.relative_to(s3_dir.root).parent) for p in s3_dir.image_files())
    assert s3_layout == local_layout


def test_status_query_compact_verify_on_s3_without_duckdb_extensions(
    server: EmulatorServer, s3_dir: DataDir, s3_client: Any, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=42, images=5)
    rng = random.Random(42)
    for _ in range(2):
        random_mutations(server.emulator, rng, 5)
        assert run_cli(*sync_args(s3_dir, server, "--reconcile")).code == 0
    # A home with no DuckDB extension directory: nothing installed, nothing to load.
    home = {"HOME": str(tmp_path / "empty-home")}
    status = run_cli("status", "--data-dir", s3_dir.location, "--images", "--json", env=home)
    assert status.code == 0, status.stderr
    live_images = {row["image_name"] for row in json.loads(status.stdout) if not row["is_deleted"]}
    assert live_images == set(server.emulator.image_names(REGION))
    extensions = run_cli(
        "query",
        "SELECT extension_name, installed, loaded FROM duckdb_extensions() "
        "WHERE extension_name IN ('httpfs', 'aws')",
        "--data-dir",
        s3_dir.location,
        "--format",
        "json",
        env=home,
    )
    assert extensions.code == 0, extensions.stderr
    assert all(not e["installed"] and not e["loaded"] for e in json.loads(extensions.stdout))
    count = ("query", "SELECT count(*) AS n FROM image_versions", "--data-dir", s3_dir.location)
    before = run_cli(*count, "--format", "json", env=home)
    assert json.loads(before.stdout) == [{"n": len(truth(server.emulator))}]
    assert len(objects(s3_client, s3_dir, "image_versions/")) > 1
    compacted = run_cli("compact", "--data-dir", s3_dir.location)
    assert compacted.code == 0, compacted.stderr
    after = run_cli(*count, "--format", "json", env=home)
    assert after.stdout == before.stdout
    partitions = {key.rsplit("/", 1)[0] for key in objects(s3_client, s3_dir, "image_versions/")}
    assert len(objects(s3_client, s3_dir, "image_versions/")) == len(partitions)
    assert not objects(s3_client, s3_dir, "_state/compaction.json")
    verified = run_cli("verify", "--data-dir", s3_dir.location)
    assert verified.code == 0, verified.stdout + verified.stderr
    assert_s3_converged(s3_dir, server)


def test_a_second_writer_of_a_target_is_refused_while_its_lease_is_held(
    server: EmulatorServer, s3_dir: DataDir, s3_client: Any
) -> None:
    seed_catalogue(server.emulator, seed=43, images=3)
    seed_catalogue(server.emulator, seed=45, images=3, region=OTHER_REGION)
    assert run_sync(s3_dir, server).ok
    with s3_dir.target_lock(target_key("default", REGION)):
        # Held well past its lease: the heartbeat keeps it fresh.
        time.sleep(S3_LOCK_TTL_S * 1.5)
        second = run_cli(*sync_args(s3_dir, server))
        assert second.code == 2
        assert "another image-versions process is writing" in second.stderr
        # A writer of another target goes ahead meanwhile, into the same dataset.
        other = run_cli(*sync_args(s3_dir, server, "--region", OTHER_REGION))
        assert other.code == 0, other.stderr
    assert not leases(s3_client, s3_dir), "released on exit"
    assert run_cli(*sync_args(s3_dir, server)).code == 0
    assert_s3_converged(s3_dir, server, (REGION, OTHER_REGION))


def test_a_writer_whose_lock_was_taken_over_stops_writing(s3_dir: DataDir, s3_client: Any) -> None:
    s3_dir.prepare()
    bucket, key = s3_dir.root.parts[0], "/".join((*s3_dir.root.parts[1:], ".lock"))
    with pytest.raises(LockLost), s3_dir.writer_lock():
        # Another writer judged the lease stale and took it over (a conditional PUT of its own).
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"another writer")
        # The lease's heartbeat ends once it has found the foreign ETag.
        (heartbeat,) = [t for t in threading.enumerate() if t.name == "s3-lock-heartbeat"]
        heartbeat.join(timeout=300)
        assert not heartbeat.is_alive(), "the heartbeat never found the other writer"
        s3_dir.write_images("123456789012", REGION, IMAGE_SCHEMA.empty_table())
    assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"another writer"
    assert not s3_dir.image_files()


def _start_sync(data_dir: DataDir, server: EmulatorServer) -> subprocess.Popen[bytes]:
    """A `--reconcile` sync (it lists every image in full: the longest kind of run)."""
    args = sync_args(data_dir, server, "--reconcile", "--concurrency", "2")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )


def _wait_for_lock(client: Any, data_dir: DataDir, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not leases(client, data_dir):
        assert process.poll() is None and time.monotonic() < deadline, "the lock never appeared"
        time.sleep(0.02)


def test_a_sigkilled_writers_lock_goes_stale_and_is_taken_over(
    server: EmulatorServer, s3_dir: DataDir, s3_client: Any
) -> None:
    """Whether a lease is fresh is judged by the process that finds it, with its own lease
    length: the refused sync judges with one longer than any test run, so it finds the lock
    fresh however slow the machine; the recovering one with the short lease, and waits as
    long as it takes (`--wait` only bounds a failure)."""
    seed_catalogue(server.emulator, seed=44, images=6)
    with held_listings(server.emulator) as listing, _start_sync(s3_dir, server) as process:
        assert listing.wait(timeout=300), "the sync never listed an image"
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    assert leases(s3_client, s3_dir), "a killed writer leaves its lock behind"
    refused = run_cli(*sync_args(s3_dir, server), env={LOCK_TTL_ENV: "86400"})
    assert refused.code == 2, "a fresh lock is respected"
    assert "another image-versions process is writing" in refused.stderr
    recovered = run_cli(*sync_args(s3_dir, server, "--wait", "600"))
    assert recovered.code == 0, recovered.stderr
    assert "took over the stale lock" in recovered.stderr
    assert not leases(s3_client, s3_dir)
    assert_s3_converged(s3_dir, server)


def test_sigkill_mid_write_then_rerun_converges(
    server: EmulatorServer, s3_dir: DataDir, s3_client: Any
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=45, images=20)
    emulator.faults.latency_s = 0.02
    with _start_sync(s3_dir, server) as process:
        _wait_for_lock(s3_client, s3_dir, process)
        locked_at = time.monotonic()
        assert process.wait(timeout=60) == 0
    duration = time.monotonic() - locked_at
    rng = random.Random(45)
    killed = 0
    for trial in range(TRIALS):
        random_mutations(emulator, rng, 4)
        instant = duration * (trial + 0.5) / TRIALS
        killed += kill_mid_run(
            lambda: _start_sync(s3_dir, server),
            instant,
            attempts=3,
            ready=lambda process: _wait_for_lock(s3_client, s3_dir, process),
        )
        visible = objects(s3_client, s3_dir, "image_versions/")
        assert all(key.endswith(".parquet") for key in visible), visible
        rerun = run_cli(*sync_args(s3_dir, server, "--reconcile", "--wait", str(S3_LOCK_TTL_S * 5)))
        assert rerun.code == 0, rerun.stderr
        assert_s3_converged(s3_dir, server)
    assert killed == TRIALS, f"only {killed} of {TRIALS} kills landed while the sync ran"
    verified = run_cli("verify", "--data-dir", s3_dir.location)
    assert verified.code == 0, verified.stdout + verified.stderr


@pytest.mark.dagster
def test_the_dagster_job_writes_an_s3_dataset(
    server: EmulatorServer, sources_file: Path, s3_dir: DataDir
) -> None:
    project = load_config(str(sources_file))
    built = build_definitions(
        project,
        SageMakerResource(config_path=str(sources_file)),
        DataDirResource(path=s3_dir.location),
    )
    keys = project.partition_keys()
    with dg.instance_for_test() as instance:
        result = built.resolve_job_def(JOB_NAME).execute_in_process(
            instance=instance,
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
            raise_on_error=False,
        )
    assert result.success
    checks = result.get_asset_check_evaluations()
    (builds,) = [c for c in checks if c.check_name == "failed_builds_since_last_run"]
    checks.remove(builds)
    assert len(checks) == 4 and all(c.passed for c in checks), [
        (c.check_name, c.description) for c in checks if not c.passed
    ]
    assert set(live(s3_dir)) == truth(server.emulator, (REGION, OTHER_REGION))
    (failed,) = view_rows(s3_dir, "SELECT count(*) FROM image_versions WHERE status LIKE '%FAILED'")
    assert builds.metadata["failed_count"].value == failed[0] > 0  # the query reads S3 too


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("s3://", "not a valid S3 location"),
        ("s3://Bad_Bucket/x", "not a valid S3 location"),
        ("s3://good-bucket/a b", "may hold only"),
        ("s3://missing-bucket/x", "bucket missing-bucket does not exist"),
    ],
)
def test_bad_s3_locations_are_configuration_errors(
    s3_client: Any, location: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DataDir.at(location).check_ours()


def test_pyarrow_is_handed_fresh_credentials_when_boto3_refreshes_them(s3_dir: DataDir) -> None:
    """A long run on temporary credentials (a role, SSO): pyarrow's S3 filesystem must not keep
    the keys it was first given once boto3 has refreshed them."""
    import botocore.credentials
    import botocore.session

    keys = iter(["FIRST", "SECOND"])

    def fetch() -> dict[str, str]:
        expiry = datetime.now(UTC) + timedelta(hours=1)
        return {
            "access_key": next(keys),
            "secret_key": "secret",
            "token": "token",
            "expiry_time": expiry.isoformat(),
        }

    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        fetch(), fetch, "sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = credentials  # what a role or SSO profile resolves to
    store = s3_dir.store
    assert isinstance(store, S3Store)
    store.__dict__["_session"] = boto3.session.Session(botocore_session=core)

    def access_key() -> str:
        return str(store.filesystem.__reduce__()[1][0]["access_key"])

    assert access_key() == "FIRST"
    assert store.filesystem is store.filesystem  # unchanged credentials: the same filesystem
    credentials._expiry_time = datetime.now(UTC)  # the hour has passed
    assert access_key() == "SECOND"
    s3_dir.prepare()  # and the dataset is still reached through it
    assert s3_dir.is_ours()


@pytest.mark.dagster  # check loads the code location, in a child process
def test_check_on_an_s3_data_dir_leaves_its_objects_as_they_were(
    server: EmulatorServer, s3_dir: DataDir, s3_client: Any, s3_url: str
) -> None:
    seed_catalogue(server.emulator, seed=47, images=3)
    sts = {"AWS_ENDPOINT_URL_STS": s3_url}  # moto's server answers every service
    args = ("check", "--endpoint-url", server.url, "--json", "--data-dir")

    fresh = run_cli(*args, s3_dir.location, env=sts)
    assert fresh.code == 0, fresh.stdout + fresh.stderr
    assert json.loads(fresh.stdout)["data_dir"]["exists"] is False
    assert objects(s3_client, s3_dir) == []

    assert run_cli(*sync_args(s3_dir, server)).code == 0
    before = objects(s3_client, s3_dir)
    synced = run_cli(*args, s3_dir.location, env=sts)
    assert synced.code == 0, synced.stdout + synced.stderr
    assert json.loads(synced.stdout)["data_dir"]["detail"] == "writable, 3 locks free"
    assert objects(s3_client, s3_dir) == before

    missing = run_cli(*args, "s3://iv-no-such-bucket/data", env=sts)
    assert missing.code == 1
    assert json.loads(missing.stdout)["data_dir"]["detail"] == (
        "S3 bucket iv-no-such-bucket does not exist; create it first"
    )
