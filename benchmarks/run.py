"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--only B1,B2] [--out FILE]``.

Every scenario runs against the bundled emulator on loopback (in a process of its own), and
every ratio is taken within this run. Prints one table and writes every raw repeat as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from . import (
    api,
    bulk,
    ceiling,
    failed_builds,
    files,
    org200,
    organization,
    query_memory,
    rate,
    scale,
    startup,
)
from .harness import Context, Outcome, Sizes, isolate_aws_env, print_table

Scenario = Callable[[Context, frozenset[str]], dict[str, Outcome]]


def _single(name: str, function: Callable[[Context], Outcome]) -> Scenario:
    def run(ctx: Context, _: frozenset[str]) -> dict[str, Outcome]:
        return {name: function(ctx)}

    return run


# (names it can report, how to run them) in running order; B4 and B5 share the 1M catalogue.
SCENARIOS: list[tuple[tuple[str, ...], Scenario]] = [
    (("EMU",), _single("EMU", ceiling.emulator_ceiling)),
    (("B1",), _single("B1", api.b1)),
    (("B2",), _single("B2", api.b2)),
    (("B3",), _single("B3", api.b3)),
    (("ORG",), _single("ORG", organization.org)),
    (("ORG-200",), _single("ORG-200", org200.org200)),
    (("RATE",), _single("RATE", rate.rate)),
    (("B4", "B5"), bulk.b4_b5),
    (("B6",), _single("B6", files.b6)),
    (("B7",), _single("B7", startup.b7)),
    (("B8",), _single("B8", startup.b8)),
    (("SCALE",), _single("SCALE", scale.scale)),
    (("Q1",), _single("Q1", query_memory.q1)),
    (("A1",), _single("A1", failed_builds.a1)),
]
ALL = tuple(name for names, _ in SCENARIOS for name in names)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under 2 minutes)")
    parser.add_argument(
        "--only", metavar="B1,B2", help=f"comma-separated scenarios of {', '.join(ALL)}"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"))
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one workload size of harness.Sizes, e.g. org_targets=30 (repeatable)",
    )
    args = parser.parse_args()
    try:
        args.sizes = (Sizes.quick() if args.quick else Sizes()).overridden(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    wanted = {name.strip().upper() for name in (args.only or ",".join(ALL)).split(",")}
    unknown = wanted - set(ALL)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(ALL)}")
    args.wanted = frozenset(wanted)
    return args


def main() -> int:
    args = _parse_args()
    ctx = Context.create(args.sizes)
    isolate_aws_env(ctx.scratch)
    started_at, started = datetime.now(UTC), time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    timings: dict[str, float] = {}
    try:
        for names, scenario in SCENARIOS:
            if args.wanted & set(names):
                began = time.perf_counter()
                print(f"running {'+'.join(names)} ...", file=sys.stderr, flush=True)
                results = scenario(ctx, args.wanted)
                outcomes.update({k: v for k, v in results.items() if k in args.wanted})
                timings["+".join(names)] = time.perf_counter() - began
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    total = time.perf_counter() - started
    rows = [row for outcome in outcomes.values() for row in outcome.rows]
    print_table(rows)
    print(f"\ntotal wall time {total:.0f} s ({'quick' if args.quick else 'full'} sizes)")
    _write_json(args, ctx.sizes, outcomes, timings, started_at, total)
    return 0


def _write_json(
    args: argparse.Namespace,
    sizes: Sizes,
    outcomes: dict[str, Outcome],
    timings: dict[str, float],
    started_at: datetime,
    total: float,
) -> None:
    document = {
        "started": started_at.isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": asdict(sizes),
        "python": sys.version.split()[0],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "total_seconds": total,
        "scenario_seconds": timings,
        "scenarios": {
            name: {"rows": [asdict(row) for row in outcome.rows], "raw": outcome.raw}
            for name, outcome in outcomes.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1, default=str))
    print(f"raw results: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
