"""Commands run as whole processes and measured from outside: wall seconds, CPU seconds (user +
system, the kernel's accounting of that one child and the children it waited for, such as
`sync --processes`'s, so a server it talks to is never counted) and peak RSS; the CPU time of
a long-lived process (a server) by its pid; the machine's load.

Peak RSS is the largest VmHWM of the child and its children, polled while it runs: its
`ru_maxrss` (from wait4, or its own getrusage) starts from the RSS of the process that spawned
it, so a child smaller than this runner would report the runner's size. The tree's RSS is the
most the child and its children held at once (their VmRSS summed at each poll).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessRun:
    """One finished child process."""

    returncode: int
    stdout: str
    stderr: str
    started_at: float
    """Epoch seconds just before the spawn, to line the child's log stamps up with."""
    seconds: float
    user_seconds: float
    sys_seconds: float
    peak_rss_mb: float
    tree_rss_mb: float

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.sys_seconds

    def last_json(self) -> dict[str, Any]:
        """The last line of its stdout, as a JSON object."""
        document: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return document

    def figures(self) -> dict[str, float]:
        return {
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "user_seconds": self.user_seconds,
            "sys_seconds": self.sys_seconds,
            "peak_rss_mb": self.peak_rss_mb,
            "tree_rss_mb": self.tree_rss_mb,
        }


def run_measured(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    ok_codes: tuple[int, ...] = (0,),
    cwd: str | None = None,
    keep_stdout: bool = True,
) -> ProcessRun:
    """Run `args` (in `cwd`) to completion (killed after `timeout` seconds); RuntimeError unless
    it exits with one of `ok_codes`. Without `keep_stdout` its stdout goes to /dev/null (a
    gigabyte of query output is not kept to be thrown away) and `stdout` is empty."""
    with (
        tempfile.TemporaryFile() as kept,
        open(os.devnull, "wb") as discarded,
        tempfile.TemporaryFile() as err,
    ):
        out = kept if keep_stdout else discarded
        started_at, started = time.time(), time.perf_counter()
        process = subprocess.Popen(
            list(args), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        high_water = _HighWater(process.pid)
        try:
            # wait4, not wait: the CPU of this child alone.
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
            high_water.stop()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        kept.seek(0)
        err.seek(0)
        run = ProcessRun(
            returncode=process.returncode,
            stdout=kept.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            started_at=started_at,
            seconds=seconds,
            user_seconds=usage.ru_utime,
            sys_seconds=usage.ru_stime,
            peak_rss_mb=high_water.peak_kb / 1024,
            tree_rss_mb=high_water.tree_kb / 1024,
        )
    if run.returncode not in ok_codes:
        raise RuntimeError(f"{list(args)[:4]} exited {run.returncode}: {run.stderr[-2000:]}")
    return run


class _HighWater:
    """Polls the peak RSS of a running process and of its children until stopped: the largest
    VmHWM (which only grows) of any of them, and the most their VmRSS added up to."""

    POLL_S = 0.02

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.tree_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            tree = [self.pid, *_children(self.pid)]
            sizes = [_status_kb(pid) for pid in tree]
            if sizes[0] is None:  # reaped
                return
            known = [size for size in sizes if size is not None]
            self.peak_kb = max(self.peak_kb, *(high for high, _ in known))
            self.tree_kb = max(self.tree_kb, sum(now for _, now in known))
            self._stop.wait(self.POLL_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _children(pid: int) -> list[int]:
    """The processes the main thread of `pid` started (`sync --processes`'s shards)."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def _status_kb(pid: int) -> tuple[int, int] | None:
    """(VmHWM, VmRSS) of a running process in kB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])
    except (KeyError, ValueError):
        return None  # a zombie has no memory lines


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (Linux /proc)."""
    # The command name (field 2) may hold spaces: the fields after its ")" are fixed.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (the other work sharing its cores)."""
    return [round(load, 2) for load in os.getloadavg()]
