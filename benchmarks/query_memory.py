"""Q1: the peak memory of `image-versions query` over large results, as a process of its own.

`query` prints its rows as DuckDB hands them over, so its peak RSS should not grow with the
result: 10 million rows of `range()` (one BIGINT), and as many wide rows (a string, integers, a
timestamp, a boolean: the converting path), printed as CSV, JSON and JSON Lines to /dev/null.

Also runs alone, to measure another checkout of the project (the code before a change, say):

    python -m benchmarks.query_memory [--rows N] [--checkout DIR] [--out FILE]

which runs `python -m pipeline` in DIR instead of this checkout's `image-versions`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.storage import DataDir

from .commands import cli
from .harness import (
    Context,
    Outcome,
    Row,
    Sizes,
    isolate_aws_env,
    print_table,
    seconds_text,
    verdict,
)
from .measured import run_measured

PEAK_LIMIT_MB = 300.0
NARROW = "SELECT range AS n FROM range({rows})"
WIDE = (
    "SELECT range AS id, 'image-' || (range % 5000) AS image_name, "
    "(range % 100)::INTEGER AS version, 'CREATED' AS status, "
    "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_milliseconds(range) AS last_modified_time, "
    "range % 7 = 0 AS is_deleted FROM range({rows})"
)
WORKLOADS = [
    ("narrow", NARROW, "csv"),
    ("narrow", NARROW, "json"),
    ("narrow", NARROW, "jsonl"),
    ("wide", WIDE, "csv"),
    ("wide", WIDE, "json"),
]


def measure(rows: int, data_dir: Path, command: list[str], cwd: str | None) -> list[dict[str, Any]]:
    """Each workload's peak RSS and wall time, `command` being how to run the CLI; a format
    the CLI does not know (jsonl, before it existed) is recorded with its error."""
    DataDir(data_dir).prepare()
    runs: list[dict[str, Any]] = []
    for shape, sql, fmt in WORKLOADS:
        args = [*command, "query", sql.format(rows=rows), "--data-dir", str(data_dir)]
        run = run_measured(
            [*args, "--format", fmt], cwd=cwd, keep_stdout=False, ok_codes=(0, 2), timeout=1800
        )
        runs.append(
            {
                "shape": shape,
                "format": fmt,
                "rows": rows,
                "ok": run.returncode == 0,
                "error": run.stderr.strip()[-300:] if run.returncode else "",
                **run.figures(),
            }
        )
    return runs


def outcome_of(runs: list[dict[str, Any]], label: str = "") -> Outcome:
    outcome = Outcome(raw={"runs": runs})
    for run in runs:
        variant = f"{run['rows']:,} {run['shape']} rows as {run['format']}{label}"
        if not run["ok"]:
            outcome.add(Row("Q1", variant, "-", "-", "-", "n/a", run["error"][:80]))
            continue
        peak = run["peak_rss_mb"]
        outcome.add(
            Row(
                "Q1",
                variant,
                f"{peak:.0f} MB",
                "-",
                f"peak RSS <= {PEAK_LIMIT_MB:.0f} MB",
                verdict(peak <= PEAK_LIMIT_MB),
                f"{seconds_text(run['seconds'])} wall, {seconds_text(run['cpu_seconds'])} CPU",
            )
        )
    return outcome


def q1(ctx: Context) -> Outcome:
    """This checkout's `image-versions query`."""
    return outcome_of(measure(ctx.sizes.query_rows, ctx.fresh_dir("q1-data"), cli(), None))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.query_memory", description=__doc__)
    parser.add_argument("--rows", type=int, default=Sizes().query_rows)
    parser.add_argument(
        "--checkout", type=Path, help="measure the project checked out here (default: this one)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/query_memory.json"))
    args = parser.parse_args()
    ctx = Context.create(Sizes(query_rows=args.rows))
    isolate_aws_env(ctx.scratch)
    if args.checkout is None:
        command, cwd, label = cli(), None, ""
    else:
        command, cwd, label = [sys.executable, "-m", "pipeline"], str(args.checkout), " (checkout)"
    try:
        runs = measure(args.rows, ctx.fresh_dir("q1-data"), command, cwd)
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    outcome = outcome_of(runs, label)
    print_table(outcome.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"checkout": str(args.checkout or "."), "runs": runs}
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"raw results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
