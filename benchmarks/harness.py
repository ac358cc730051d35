"""What every scenario uses: the isolated AWS environment, syncs, timing, result rows."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.extract import sync
from pipeline.run import SourceTarget, SyncOptions, SyncReport
from pipeline.storage import DataDir

from .catalogue import REGION

PASS, MISS, INFO = "PASS", "MISS", "info"


def isolate_aws_env(scratch: Path) -> None:
    """Dummy credentials and no AWS configuration files: only the emulator can answer."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "IMAGE_VERSIONS_")):
            del os.environ[name]
    missing = str(scratch / "no-aws-config")
    os.environ.update(
        AWS_ACCESS_KEY_ID="benchmark",
        AWS_SECRET_ACCESS_KEY="benchmark",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=missing,
        AWS_SHARED_CREDENTIALS_FILE=missing,
        AWS_EC2_METADATA_DISABLED="true",
    )


def targets_for(endpoint_url: str, access: AccessSettings | None = None) -> list[SourceTarget]:
    source = SourceConfig("bench", (REGION,), endpoint_url=endpoint_url)
    return build_targets(ProjectConfig(sources=(source,)), access or AccessSettings())


def product_sync(
    endpoint_url: str, data_dir: PurePath, access: AccessSettings | None = None
) -> tuple[float, SyncReport]:
    """One in-process sync, at default settings unless `access` says otherwise; its wall
    seconds (the targets are built beforehand, as the CLI does) and report."""
    access = access or AccessSettings()
    targets = targets_for(endpoint_url, access)
    started = time.perf_counter()
    report = sync(DataDir(data_dir), targets, SyncOptions(concurrency=access.concurrency))
    return time.perf_counter() - started, report


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def medians(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The median over `runs` of each numeric figure of the first run (others are left out)."""
    return {
        key: statistics.median(run[key] for run in runs)
        for key, value in runs[0].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def run_json(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600
) -> tuple[float, dict[str, Any]]:
    """Run `python -m ARGS` to completion; (wall seconds, its last stdout line as JSON)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {completed.returncode}: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return seconds, result


def run_command(args: Sequence[str], timeout: float = 600) -> float:
    """Wall seconds of a command that must succeed (output discarded)."""
    started = time.perf_counter()
    completed = subprocess.run(
        list(args), capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{args} exited {completed.returncode}: {completed.stderr[-2000:]!r}")
    return time.perf_counter() - started


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    scenario: str
    variant: str
    value: str
    ratio: str
    target: str
    result: str
    note: str = ""


def verdict(ok: bool) -> str:
    return PASS if ok else MISS


def seconds_text(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


@dataclass
class Outcome:
    """What one scenario reports: table rows and every raw measurement."""

    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)


@dataclass(frozen=True)
class Sizes:
    """Workload sizes and repeats; `quick()` shrinks them to a smoke run."""

    api_images: int = 1000
    rate_images: int = 150
    bulk_images: int = 2000
    bulk_versions: int = 500
    small_history_versions: int = 5
    file_syncs: int = 200
    file_images: int = 50
    file_versions: int = 40
    load_seconds: float = 4.0
    org_targets: int = 100
    """ORG: the organization's accounts (the management account among them), one target each."""
    org_images: int = 50
    org200_targets: int = 200
    """ORG-200: the organization's accounts, each of `org200_images` images."""
    org200_images: int = 500
    org200_large_images: int = 10_000
    """ORG-200's yardstick: one account of this many images, for the CPU of a call."""
    rate_limit_seconds: float = 10.0
    """RATE's hard limits: images enough for about this many seconds of calls at the limit (at
    least 30)."""
    rate_random_images: int = 300
    """RATE's random throttles: the images of each first sync."""
    rate_neighbour_images: int = 120
    """RATE's neighbour rows: enough calls that the bucket's first second is a small part."""
    rate_org_accounts: int = 8
    rate_org_images: int = 120
    """RATE's accounts side by side, and each one's images."""
    query_rows: int = 10_000_000
    """Q1: rows of each `query` whose peak memory is measured."""
    alert_images: int = 1000
    """A1: images of 100 versions each: the history the failed-builds query reads."""
    repeats: int = 3
    latency_repeats: int = 5
    """For B2's product syncs: a few seconds each, and noisier than the rest."""
    slow_repeats: int = 1
    """For runs over ~20 s (the latency-bound baseline, the 1M-version syncs, ORG's syncs)."""

    def overridden(self, assignments: Sequence[str]) -> Sizes:
        """These sizes with `NAME=VALUE` assignments applied; ValueError for a bad one."""
        sizes = asdict(self)
        for assignment in assignments:
            name, _, value = assignment.partition("=")
            if name not in sizes:
                raise ValueError(f"no size {name!r} (in {assignment!r}); sizes: {', '.join(sizes)}")
            sizes[name] = type(sizes[name])(value)
        return Sizes(**sizes)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            api_images=200,
            rate_images=40,
            bulk_images=200,
            file_syncs=30,
            file_images=20,
            load_seconds=2.0,
            org_targets=10,
            org_images=50,
            org200_targets=20,
            org200_images=50,
            org200_large_images=1000,
            rate_limit_seconds=3.0,
            rate_neighbour_images=60,
            rate_org_images=60,
            query_rows=1_000_000,
            alert_images=100,
            repeats=1,
            latency_repeats=1,
        )


@dataclass
class Context:
    """Sizes and a scratch directory shared by the scenarios of one run."""

    sizes: Sizes
    scratch: Path
    _serial: int = 0

    def fresh_dir(self, label: str) -> Path:
        self._serial += 1
        return self.scratch / f"{self._serial:04d}-{label}"

    @classmethod
    def create(cls, sizes: Sizes) -> Context:
        return cls(sizes, Path(tempfile.mkdtemp(prefix="image-versions-bench-")))


COLUMNS = ("scenario", "variant", "median", "ratio", "target", "result", "note")


def print_table(rows: list[Row]) -> None:
    lines = [COLUMNS, *(astuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS) - 1)]
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in [*widths, len(COLUMNS[-1])]))
