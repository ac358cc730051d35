"""Shared fixtures: an isolated AWS environment, the emulator on a real socket, sync helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.config import build_targets
from pipeline.emulator import Clock, Emulator, EmulatorServer
from pipeline.extract import SyncOptions, SyncReport, sync
from pipeline.schema import to_ms
from pipeline.storage import DataDir

REGION = "us-east-1"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No real AWS configuration leaks in: dummy keys, a fixed region, no profiles."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name == "IMAGE_VERSIONS_DATA_DIR":
            monkeypatch.delenv(name)
    empty = tmp_path_factory.mktemp("aws") / "none"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """An empty emulator, clock frozen at START, serving HTTP on a free loopback port."""
    with EmulatorServer(Emulator(clock=Clock(start=START))) as running:
        yield running


@pytest.fixture
def emulator(server: EmulatorServer) -> Emulator:
    return server.emulator


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data")


def run_sync(data_dir: DataDir, server: EmulatorServer, **options: Any) -> SyncReport:
    """One in-process sync of the emulator's default region."""
    targets = build_targets(
        regions=[options.pop("region", REGION)],
        endpoint_url=server.url,
        profile=None,
        max_attempts=options.pop("max_attempts", 10),
    )
    return sync(data_dir, targets, SyncOptions(**options))


def truth(emulator: Emulator, region: str = REGION) -> set[tuple[Any, ...]]:
    """The emulator's live versions, as the comparable tuples `live_rows` gives."""
    return {
        (
            v["ImageName"],
            v["Version"],
            v["ImageArn"],
            v["ImageVersionArn"],
            v["ImageVersionStatus"],
            v.get("FailureReason"),
            to_ms(v["CreationTime"]),
            to_ms(v["LastModifiedTime"]),
        )
        for v in emulator.live_versions(region)
    }


def live_rows(data_dir: DataDir) -> list[tuple[Any, ...]]:
    """The `image_versions` view, through the warehouse file, as comparable tuples."""
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        return connection.execute(
            "SELECT image_name, version, image_arn, image_version_arn, status, failure_reason, "
            "epoch_ms(creation_time), epoch_ms(last_modified_time) FROM image_versions"
        ).fetchall()


def history_duplicates(data_dir: DataDir) -> int:
    """States that appear more than once in `image_version_history` (must be 0)."""
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        row = connection.execute(
            "SELECT count(*) - count(DISTINCT (account_id, region, image_name, version, "
            "status, failure_reason, creation_time, last_modified_time, is_deleted)) "
            "FROM image_version_history"
        ).fetchone()
    assert row is not None
    return int(row[0])


def assert_converged(data_dir: DataDir, emulator: Emulator) -> None:
    """Invariant 1: the view equals the source's live versions, no duplicate anywhere."""
    rows = live_rows(data_dir)
    assert len(rows) == len(set(rows)), "duplicate live versions"
    assert set(rows) == truth(emulator)
    assert history_duplicates(data_dir) == 0


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """`python -m pipeline ARGS` in a subprocess, with the test's environment."""
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)
