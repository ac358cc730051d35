"""Helpers shared by the tests: in-process and CLI syncs, the source's truth, the views' rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.emulator import Emulator, EmulatorServer
from pipeline.extract import sync
from pipeline.run import SyncOptions, SyncReport
from pipeline.schema import to_ms
from pipeline.storage import DataDir

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run_sync(data_dir: DataDir, server: EmulatorServer, **options: Any) -> SyncReport:
    """One in-process sync of the emulator's default region."""
    source = SourceConfig("default", (options.pop("region", REGION),), endpoint_url=server.url)
    access = AccessSettings(max_rps=options.pop("max_rps", None))
    targets = build_targets(ProjectConfig(sources=(source,)), access)
    return sync(data_dir, targets, SyncOptions(**options))


def truth(emulator: Emulator, regions: tuple[str, ...] = (REGION,)) -> set[tuple[Any, ...]]:
    """The emulator's live versions, as the comparable tuples `live_rows` gives."""
    return {
        (
            region,
            v["ImageName"],
            v["Version"],
            v["ImageArn"],
            v["ImageVersionArn"],
            v["ImageVersionStatus"],
            v.get("FailureReason"),
            to_ms(v["CreationTime"]),
            to_ms(v["LastModifiedTime"]),
        )
        for region in regions
        for v in emulator.live_versions(region)
    }


def live_rows(data_dir: DataDir, regions: tuple[str, ...] = (REGION,)) -> list[tuple[Any, ...]]:
    """The `image_versions` view of some regions, through the warehouse file, as tuples."""
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        return connection.execute(
            "SELECT region, image_name, version, image_arn, image_version_arn, status, "
            "failure_reason, epoch_ms(creation_time), epoch_ms(last_modified_time) "
            "FROM image_versions WHERE list_contains(?, region)",
            [list(regions)],
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


_IMPORTS_REPORTED = (
    "import atexit, json, os, sys\n"
    "def report():\n"
    "    layers = sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'assets'})\n"
    "    with open(os.environ['IMPORTS_REPORT'], 'w') as out:\n"
    "        json.dump(layers, out)\n"
    "atexit.register(report)\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_cli_reporting_imports(
    report: Path, *args: str, timeout: float = 180
) -> tuple[CliResult, list[str]]:
    """`run_cli`, and which of the Dagster layers (`dagster`, `assets`) the process imported."""
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORTS_REPORTED, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "IMPORTS_REPORT": str(report)},
        stdin=subprocess.DEVNULL,
    )
    result = CliResult(completed.returncode, completed.stdout, completed.stderr)
    return result, json.loads(report.read_text())


def kill_mid_run(
    launch: Callable[[], subprocess.Popen[bytes]],
    instant: float,
    attempts: int,
    ready: Callable[[subprocess.Popen[bytes]], None] = lambda process: None,
) -> bool:
    """Start a run with `launch` and SIGKILL it `instant` seconds after `ready` returns.

    A run that finished before its instant (the machine was faster than when timed) is
    started again and killed at half the instant, so a trial is a real kill mid-run.
    Returns whether a kill landed within `attempts`.
    """
    for _ in range(attempts):
        with launch() as process:
            ready(process)
            time.sleep(instant)
            process.send_signal(signal.SIGKILL)
            if process.wait(timeout=30) == -signal.SIGKILL:
                return True
        instant /= 2
    return False
