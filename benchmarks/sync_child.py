"""One product sync in a process of its own, for its peak RSS and CPU split (B4, B5).

``python -m benchmarks.sync_child --endpoint-url URL --data-dir DIR [--stages]`` prints one
JSON line: the sync's wall and CPU seconds, rows, API calls, the CPU split by stage (with
--stages) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from pipeline.extract import sync
from pipeline.run import SyncOptions
from pipeline.storage import DataDir

from .harness import targets_for
from .stages import StageClock, install


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(endpoint_url: str, data_dir: Path, clock: StageClock | None) -> dict[str, Any]:
    targets = targets_for(endpoint_url)
    cpu, started = _cpu(), time.perf_counter()
    report = sync(DataDir(data_dir), targets, SyncOptions())
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows_written": report.rows_written,
        "calls": report.stats.total_calls,
        "failures": len(report.failures),
        "stages": None if clock is None else clock.split(cpu),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--stages", action="store_true")
    args = parser.parse_args()
    clock = install() if args.stages else None
    print(json.dumps(run(args.endpoint_url, args.data_dir, clock)))


if __name__ == "__main__":
    main()
