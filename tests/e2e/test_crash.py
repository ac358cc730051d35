"""Invariant 2: a sync SIGKILLed at any instant, then re-run, converges: nothing lost or doubled."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from pipeline.emulator import EmulatorServer, random_mutations, seed_catalogue
from pipeline.storage import DataDir
from tests.support import assert_converged, kill_mid_run, run_cli

TRIALS = 12


def test_sigkill_at_instants_spread_over_a_run_then_rerun_converges(
    server: EmulatorServer, tmp_path
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=21, images=30)
    emulator.faults.latency_s = 0.01
    data_dir = DataDir(tmp_path / "data")

    def args(root) -> list[str]:
        return [
            "sync",
            "--data-dir",
            str(root),
            "--endpoint-url",
            server.url,
            "--reconcile",
            "--concurrency",
            "2",
        ]

    started = time.monotonic()
    assert run_cli(*args(tmp_path / "scratch")).code == 0
    duration = time.monotonic() - started

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args(data_dir.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ),
        )

    rng = random.Random(21)
    killed = 0
    for trial in range(TRIALS):
        random_mutations(emulator, rng, 4)
        instant = duration * (trial + 0.5) / TRIALS
        killed += kill_mid_run(launch, instant, attempts=4)
        if data_dir.versions_dir.exists():
            visible = [p for p in data_dir.versions_dir.rglob("*") if p.is_file()]
            assert all(p.suffix == ".parquet" for p in visible), visible
        rerun = run_cli(*args(data_dir.root))
        assert rerun.code == 0, rerun.stderr
        assert_converged(data_dir, emulator)
    assert killed >= 10, f"only {killed} of {TRIALS} kills landed while the sync ran"
