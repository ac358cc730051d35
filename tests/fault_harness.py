"""The fault matrix's harness: an emulator on loopback, a scratch data dir, the CLI as a real
process, and how a trial is scored (rows lost and duplicated against the source)."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.emulator import Clock, Emulator, EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from tests.support import REGION, START, cli_killed_at, history_duplicates, live_rows, truth


@dataclass
class Trial:
    lost: int
    duplicates: int
    exit_status: int | None
    message: str = ""
    note: str = ""


@dataclass
class Row:
    fault: str
    trials: list[Trial]
    refusal: str = ""
    """Non-empty when the documented outcome is a clear refusal (an exit status and message)."""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.trials) and all(t.lost == 0 and t.duplicates == 0 for t in self.trials)


# ------------------------------------------------------------------ the harness


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        lines = [*self.stderr.strip().splitlines(), *self.stdout.strip().splitlines()]
        failed = [line for line in lines if "error" in line or "FAILED" in line]
        return (failed or lines or [""])[-1][:160]


class Harness:
    """One emulator on loopback, a scratch folder, and an environment with dummy credentials."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.emulator = Emulator(clock=Clock(start=START))
        self.server = EmulatorServer(self.emulator).start()
        config = workdir / "aws-config"
        config.write_text("")
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AWS_") and key != "IMAGE_VERSIONS_DATA_DIR"
        }
        self.env.update(
            AWS_ACCESS_KEY_ID="faults",
            AWS_SECRET_ACCESS_KEY="faults",
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(config),
            AWS_EC2_METADATA_DISABLED="true",
        )
        self.data = DataDir(workdir / "data")
        self.endpoint = self.server.url
        """Where syncs send their calls: the emulator, or a hostile proxy in front of it."""
        self.tracebacks = 0

    def close(self) -> None:
        self.server.stop()

    def args(self, *extra: str, region: str = REGION) -> list[str]:
        return [
            "sync",
            "--data-dir",
            str(self.data.root),
            "--endpoint-url",
            self.endpoint,
            "--region",
            region,
            *extra,
        ]

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        fsize: int | None = None,
    ) -> Run:
        def limit() -> None:
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            preexec_fn=limit,
            cwd=self.workdir,
        )
        self.tracebacks += "Traceback" in done.stderr
        return Run(done.returncode, done.stdout, done.stderr)

    def sync(self, *extra: str, **kwargs: Any) -> Run:
        return self.cli(*self.args(*extra), **kwargs)

    def seed(self, images: int = 8, region: str = REGION) -> None:
        seed_catalogue(self.emulator, seed=self.rng.randrange(10**6), images=images, region=region)

    def mutate(self, count: int = 4, region: str = REGION) -> None:
        """Changes an incremental sync can see: new versions and images, status changes,
        deleted images."""
        emulator = self.emulator
        for _ in range(count):
            emulator.clock.advance(self.rng.uniform(0.001, 5))
            names = emulator.image_names(region)
            versions = emulator.live_versions(region)
            kind = self.rng.choice(["version", "version", "status", "image", "drop"])
            if kind == "version" and names:
                emulator.create_image_version(self.rng.choice(names), region=region)
            elif kind == "status" and versions:
                victim = self.rng.choice(versions)
                emulator.update_image_version(
                    victim["ImageName"],
                    victim["Version"],
                    region=region,
                    status=self.rng.choice(["DELETE_FAILED", "CREATED", "CREATE_FAILED"]),
                    failure_reason="injected",
                )
            elif kind == "drop" and len(names) > 3:
                emulator.delete_image(self.rng.choice(names), region=region)
            else:
                name = f"fault-{self.rng.randrange(10**6)}"
                emulator.create_image(name, region=region)
                for _ in range(self.rng.randint(0, 3)):
                    emulator.create_image_version(name, region=region)

    def score(self, regions: tuple[str, ...] = (REGION,)) -> tuple[int, int]:
        """(lost, duplicates) of the data dir against the emulator."""
        expected = truth(self.emulator, regions)
        if not self.data.warehouse_path.exists():
            return len(expected), 0
        rows = live_rows(self.data, regions)
        keys = [row[:3] for row in rows]
        duplicates = len(keys) - len(set(keys)) + history_duplicates(self.data)
        return len(expected ^ set(rows)), duplicates

    def trial(self, run: Run, regions: tuple[str, ...] = (REGION,), note: str = "") -> Trial:
        """The trial's score; every traceback a CLI run printed since the last trial counts as
        a loss too (no traceback may ever reach a user)."""
        lost, duplicates = self.score(regions)
        tracebacks, self.tracebacks = self.tracebacks, 0
        if tracebacks:
            note = f"{note}; {tracebacks} run(s) printed a traceback"
        return Trial(lost + tracebacks, duplicates, run.code, run.message, note)

    @contextmanager
    def started(
        self, args: list[str], command: Sequence[str] = (sys.executable, "-m", "pipeline")
    ) -> Iterator[subprocess.Popen[str]]:
        """The CLI (run by `command`) running with -v (its log on a pipe); SIGKILLed at the
        end of the block."""
        with subprocess.Popen(
            [*command, *args, "-v"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        ) as process:
            try:
                yield process
            finally:
                process.kill()

    def kill_at(self, args: list[str], marker: str | None, delay: float) -> str:
        """Run the CLI and SIGKILL it `delay` s after `marker` shows in its log (or after its
        start, when marker is None). Returns the last log line before the kill."""
        with self.started(args) as process:
            last = "" if marker is None else read_until(process, marker)
            time.sleep(delay)
        return last

    def killed_at(self, args: list[str], instant: str) -> str:
        """Run the CLI, which SIGKILLs itself at `instant` of its first commit of data
        (`cli_killed_at`). Returns its last log line, ending in "never mid-run" when it was
        not killed (it committed no data)."""
        with self.started(args, cli_killed_at(instant)) as process:
            lines = list(process.stderr or ()) or [""]
            killed = process.wait(timeout=60) == -signal.SIGKILL
        return lines[-1].strip() + ("" if killed else ": never mid-run")


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    """Read the process's log until a line holds `marker` (or the log ends); that line."""
    assert process.stderr is not None
    line = ""
    for line in process.stderr:
        if marker in line:
            break
    return line.strip()


@contextmanager
def harness(seed: int) -> Iterator[Harness]:
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        h = Harness(Path(scratch), seed)
        try:
            yield h
        finally:
            h.close()
