"""B2 as whole processes: the bare boto3 yardstick, and the product's fixed cost against its
cost per call. Everything runs against B2's emulator (same catalogue, same latency).

- The bare boto3 script (bare_boto3.py, a process of its own) makes the product's calls on as
  many threads; beside it the latency formula, calls x latency / workers + start-up (its own
  no-op process). The product's `image-versions sync` processes, full then no-change into a
  fresh data dir, are taken as ratios to it (target: within 1.1x).
- Fixed cost and cost per call: no-change syncs of one image and of every image; the difference
  of their walls over the difference of their calls is the cost of a call, the one-image sync
  less its two calls the fixed cost. Both are timed by phase from the sync's own log lines
  (`-vv --log-format json`, see PHASES), and the imports are timed under `-X importtime`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from pipeline.defaults import CONCURRENCY, LOOKBACK_MINUTES

from .catalogue import REGION, CatalogueSpec
from .commands import cli, import_profile, imports_note, sync_args
from .emulator_proc import EmulatorHandle, open_emulator
from .harness import INFO, Context, Row, median, seconds_text, verdict
from .measured import ProcessRun, load_average, run_measured

YARDSTICK_LIMIT = 1.1
STEPS = ("full", "no-change")
LOG_OPTIONS = ("--json", "-vv", "--log-format", "json")
# Each phase ends at the first or the last log line that starts with its marker; the first
# phase starts at the spawn, and EXIT_PHASE runs from the last marker to the process's exit.
PHASES = (
    ("start-up (interpreter, imports, config, client, lock, state)", "listing images of", min),
    ("ListImages, images file, plan", "listing versions of", min),
    ("listings but the last", "listing versions of", max),
    ("last listing, state commit", "state committed", max),
    ("compaction check, views", "sync done", min),
)
EXIT_PHASE = "summary, exit"
STARTUP_KEYS = ("seconds", "cpu_seconds", "peak_rss_mb")


def bare_command(endpoint_url: str, cursors: Path, retry_mode: str = "standard") -> list[str]:
    """The bare boto3 script's command, syncing into the cursors file `cursors`."""
    return [
        sys.executable,
        "-m",
        "benchmarks.bare_boto3",
        "--endpoint-url",
        endpoint_url,
        "--region",
        REGION,
        "--cursors",
        str(cursors),
        "--workers",
        str(CONCURRENCY),
        "--lookback-minutes",
        str(LOOKBACK_MINUTES),
        "--retry-mode",
        retry_mode,
    ]


def _measured(emulator: EmulatorHandle, command: list[str]) -> tuple[ProcessRun, dict[str, Any]]:
    """The process run, and its figures with the calls the emulator answered."""
    emulator.clear()
    load = load_average()[0]
    run = run_measured(command)
    counts = emulator.counts()
    calls = sum(counts["operations"].values()) - sum(counts["errors"].values())
    return run, {**run.figures(), "calls": calls, "load_before": load}


def phases(run: ProcessRun) -> dict[str, float]:
    """Seconds of each phase of a sync run with LOG_OPTIONS, from its log lines' stamps."""
    stamps: dict[str, list[float]] = {}
    for line in run.stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            for _, marker, _ in PHASES:
                if entry["message"].startswith(marker):
                    stamps.setdefault(marker, []).append(
                        datetime.fromisoformat(entry["time"]).timestamp()
                    )
    marks = [run.started_at, *(pick(stamps[marker]) for _, marker, pick in PHASES)]
    marks.append(run.started_at + run.seconds)
    names = [name for name, _, _ in PHASES] + [EXIT_PHASE]
    return {name: end - start for name, (start, end) in zip(names, pairwise(marks), strict=True)}


def measure(ctx: Context, emulator: EmulatorHandle, latency_s: float) -> dict[str, Any]:
    """Every process run of the yardstick and of the fixed-cost analysis, with their figures."""
    sizes = ctx.sizes
    raw: dict[str, Any] = {"startup": [], "runs": []}
    with open_emulator() as empty, open_emulator() as single:
        for _ in range(sizes.repeats):
            product_dir, cursors = ctx.fresh_dir("b2-noop"), ctx.fresh_dir("b2-noop.json")
            raw["startup"].append(
                {
                    "product": _measured(empty, [*cli(), *sync_args(empty.url, product_dir)])[1],
                    "bare": _measured(empty, bare_command(empty.url, cursors))[1],
                }
            )
        for _ in range(sizes.latency_repeats):
            data_dir, cursors = ctx.fresh_dir("b2-process"), ctx.fresh_dir("b2-bare.json")
            product = [*cli(), *sync_args(emulator.url, data_dir, "--json")]
            steps: dict[str, dict[str, Any]] = {}
            for step in STEPS:
                steps[step] = {
                    "product": _measured(emulator, product)[1],
                    "bare": _measured(emulator, bare_command(emulator.url, cursors))[1],
                }
            raw["runs"].append(steps)
        single.fill(CatalogueSpec(1, 19))
        single.faults(latency_s=latency_s)
        one_image = ctx.fresh_dir("b2-one-image")
        run_measured([*cli(), *sync_args(single.url, one_image)])  # the state to start from
        raw["one_image"] = _logged_syncs(ctx, single, one_image)
        raw["every_image"] = _logged_syncs(ctx, emulator, data_dir)  # the last pair's
        raw["imports"], raw["import_seconds"] = import_profile(
            ["-m", "pipeline", *sync_args(single.url, one_image)]
        )
    return raw


def _logged_syncs(ctx: Context, emulator: EmulatorHandle, data_dir: Path) -> list[dict[str, Any]]:
    """No-change syncs (`data_dir` is synced already) with their phases."""
    runs = []
    for _ in range(ctx.sizes.repeats):
        run, figures = _measured(
            emulator, [*cli(), *sync_args(emulator.url, data_dir, *LOG_OPTIONS)]
        )
        runs.append(figures | {"phases": phases(run)})
    return runs


def _median_of(runs: list[dict[str, Any]], key: str) -> float:
    return median([run[key] for run in runs])


def _spread(seconds: list[float]) -> str:
    return f"{min(seconds):.2f}-{max(seconds):.2f} s"


def _phases_note(runs: list[dict[str, Any]]) -> str:
    names = runs[0]["phases"]
    return "; ".join(
        f"{name} {median([run['phases'][name] for run in runs]):.3f} s" for name in names
    )


def rows(raw: dict[str, Any], latency_s: float, workers: int) -> list[Row]:
    startup = {
        side: {key: median([pair[side][key] for pair in raw["startup"]]) for key in STARTUP_KEYS}
        for side in ("product", "bare")
    }
    result = [
        Row(
            "B2",
            "start-up: no-op process, product vs bare boto3",
            seconds_text(startup["product"]["seconds"]),
            f"{startup['product']['seconds'] / startup['bare']['seconds']:.2f}x bare",
            "-",
            INFO,
            f"bare boto3 {seconds_text(startup['bare']['seconds'])}; CPU "
            f"{startup['product']['cpu_seconds']:.2f} s vs {startup['bare']['cpu_seconds']:.2f} s;"
            f" peak RSS {startup['product']['peak_rss_mb']:.0f} MB vs "
            f"{startup['bare']['peak_rss_mb']:.0f} MB",
        )
    ]
    for step in STEPS:
        result.extend(_step_rows(step, raw["runs"], startup["bare"]["seconds"], latency_s, workers))
    result.extend(_fixed_cost_rows(raw, latency_s, workers))
    return result


def _step_rows(
    step: str, runs: list[dict[str, Any]], bare_startup: float, latency_s: float, workers: int
) -> list[Row]:
    sides = {side: [run[step][side] for run in runs] for side in ("product", "bare")}
    figure = {
        side: {key: _median_of(measured, key) for key in measured[0]}
        for side, measured in sides.items()
    }
    product, bare = figure["product"], figure["bare"]
    formula = bare["calls"] * latency_s / workers + bare_startup
    spread = {side: _spread([m["seconds"] for m in measured]) for side, measured in sides.items()}
    return [
        Row(
            "B2",
            f"{step} / bare boto3 process ({workers} threads)",
            seconds_text(bare["seconds"]),
            f"{bare['seconds'] / formula:.2f}x formula",
            "-",
            INFO,
            f"formula {seconds_text(formula)} = {bare['calls']:.0f} calls x "
            f"{latency_s * 1000:.0f} ms / {workers} + its start-up {seconds_text(bare_startup)};"
            f" CPU {bare['cpu_seconds']:.2f} s; runs {spread['bare']}",
        ),
        Row(
            "B2",
            f"{step} / product process vs bare boto3",
            seconds_text(product["seconds"]),
            f"{product['seconds'] / bare['seconds']:.2f}x bare",
            f"<= {YARDSTICK_LIMIT}x bare",
            verdict(product["seconds"] <= YARDSTICK_LIMIT * bare["seconds"]),
            f"{product['calls']:.0f} calls (bare {bare['calls']:.0f}); CPU "
            f"{product['cpu_seconds']:.2f} s vs {bare['cpu_seconds']:.2f} s; peak RSS "
            f"{product['peak_rss_mb']:.0f} MB vs {bare['peak_rss_mb']:.0f} MB; "
            f"{product['seconds'] / formula:.2f}x the formula; runs {spread['product']}; "
            f"1-min load {product['load_before']:.1f}",
        ),
    ]


def _fixed_cost_rows(raw: dict[str, Any], latency_s: float, workers: int) -> list[Row]:
    one, every = raw["one_image"], raw["every_image"]
    one_s, every_s = _median_of(one, "seconds"), _median_of(every, "seconds")
    one_cpu, every_cpu = _median_of(one, "cpu_seconds"), _median_of(every, "cpu_seconds")
    one_calls, every_calls = _median_of(one, "calls"), _median_of(every, "calls")
    fixed = one_s - one_calls * latency_s  # the one image's calls come one after the other
    call_s = (every_s - one_s) / (every_calls - one_calls)
    call_cpu = (every_cpu - one_cpu) / (every_calls - one_calls)
    return [
        Row(
            "B2",
            "fixed cost (no-change sync of 1 image)",
            seconds_text(fixed),
            f"{fixed / one_s:.0%} of its wall",
            "report",
            INFO,
            f"wall {seconds_text(one_s)} less {one_calls:.0f} calls x {latency_s * 1000:.0f} ms;"
            f" CPU {one_cpu:.2f} s; imports {raw['import_seconds']:.2f} s "
            f"({imports_note(raw['imports'])}); phases: {_phases_note(one)}",
        ),
        Row(
            "B2",
            "cost per call (no-change, every image vs 1)",
            f"{call_s * 1000:.2f} ms",
            f"{call_s / (latency_s / workers):.2f}x latency/{workers}",
            "report",
            INFO,
            f"CPU {call_cpu * 1000:.2f} ms a call; {every_calls:.0f} vs {one_calls:.0f} calls, "
            f"{seconds_text(every_s)} vs {seconds_text(one_s)}; phases of the every-image sync:"
            f" {_phases_note(every)}",
        ),
    ]
