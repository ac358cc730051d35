"""ORG-200: an organization of 200 accounts x 500 images (100,000 images), each account limited
to 20 requests/s, 20 ms a call, synced at default settings: what a sync across many accounts
costs in CPU against one large account (issue 22).

Served as ORG serves it (served_org.py: moto for STS and Organizations, one emulator process
for every account). Steps, each a whole `image-versions sync` process measured from outside
(measured.py: its CPU with its shards', user and system apart; its largest process and its
tree's memory), the emulator's and moto's CPU read from their own processes:

- **full**: a first sync into a fresh data dir, at default settings (a process per core: the
  organization's 200 accounts are counted before it starts);
- **no-change**: the next sync, at default settings (a process per core: it knows 200);
- **no-change, one process**: the same with `--processes 1`, for what the second core earns;
- **one large target**: one account of `org200_large_images` images, no limit, no-change, as
  the yardstick of CPU per call; and beside it the bare boto3 script (bare_boto3.py) making
  the same no-change calls on as many threads, what botocore alone costs a call here. Both
  run before the organization's syncs and again after them: the machine's speed drifts
  between runs, so the yardstick is their mean and both are shown.

CPU per call is the sync's CPU less a no-op sync's, over the calls the emulator answered.
Targets: a no-change sync within 90 s of wall; where the emulator's own CPU on the same cores
hides that, the sync's CPU within 130 s; CPU per call within 1.2x of the one large target's;
`--processes 2` at least 1.7x faster than one when CPU-bound; peak RSS under 1 GB.

"When CPU-bound" is the busy phase (organization.py's `busy_phase`): calls answered a second
from 10% to 90% of a sync's calls, which leaves out its start and its tail, where the last
targets run alone at their accounts' limits (about 20 s of a no-change sync's 130-160 s, with
the cores mostly idle). The emulator shares the cores, and its share of them in that phase
is reported beside the speed-up; the speed-up itself is as measured.
"""

from __future__ import annotations

from typing import Any

from pipeline.shares import processes_for

from .api import RATE_RPS
from .catalogue import CatalogueSpec
from .commands import cli, sync_args
from .emulator_proc import open_emulator
from .harness import INFO, Context, Outcome, Row, median, seconds_text, verdict
from .measured import run_measured
from .organization import (
    BUSY_FROM,
    BUSY_TO,
    LATENCY_S,
    VERSIONS,
    MeasuredOrganization,
    startup_runs,
)
from .served_org import served_organization
from .yardstick import bare_command

NO_CHANGE_WALL_S = 90.0
NO_CHANGE_CPU_S = 130.0
PER_CALL_FACTOR = 1.2
PROCESSES_SPEED_UP = 1.7
PEAK_RSS_MB = 1024.0


def _one_large_target(ctx: Context) -> dict[str, Any]:
    """A no-change sync of one account of many images, unlimited: CPU per call at one target."""
    with open_emulator() as emulator:
        emulator.fill(CatalogueSpec(ctx.sizes.org200_large_images, 1))
        emulator.faults(latency_s=LATENCY_S)
        data_dir = ctx.fresh_dir("org200-large")
        command = [*cli(), *sync_args(emulator.url, data_dir, "--json")]
        run_measured(command, timeout=1800)
        emulator.clear()
        cpu = emulator.cpu_seconds()
        run = run_measured(command, timeout=1800)
        calls = sum(emulator.counts()["operations"].values())
        emulator_cpu = emulator.cpu_seconds() - cpu
        bare = bare_command(emulator.url, ctx.fresh_dir("org200-bare.json"))
        run_measured(bare, timeout=1800)
        emulator.clear()
        bare_run = run_measured(bare, timeout=1800)
        return {
            **run.figures(),
            "calls": calls,
            "emulator_cpu_seconds": emulator_cpu,
            "bare": {
                **bare_run.figures(),
                "calls": sum(emulator.counts()["operations"].values()),
            },
        }


def _measure(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    raw: dict[str, Any] = {
        "targets": sizes.org200_targets,
        "images": sizes.org200_images,
        "startup": startup_runs(ctx),
        "large": _one_large_target(ctx),
    }
    with served_organization(sizes.org200_targets) as served:
        served.fill(CatalogueSpec(sizes.org200_images, VERSIONS, spread=True))
        served.emulator.faults(latency_s=LATENCY_S, rate_limit_rps=RATE_RPS)
        organization = MeasuredOrganization(ctx, served)
        data_dir = ctx.fresh_dir("org200")
        raw["full"] = organization.sync(data_dir)
        raw["no-change"] = organization.sync(data_dir)
        raw["no-change, one process"] = organization.sync(data_dir, "--processes", "1")
    raw["large, after"] = _one_large_target(ctx)  # the machine's speed drifts between runs
    return raw


def org200(ctx: Context) -> Outcome:
    return _outcome(_measure(ctx))


def _outcome(raw: dict[str, Any]) -> Outcome:
    outcome = Outcome(raw=raw)
    startup_cpu = median([run["cpu_seconds"] for run in raw["startup"]])
    yardsticks = [raw["large"], raw["large, after"]]
    per_call = [(large["cpu_seconds"] - startup_cpu) / large["calls"] for large in yardsticks]
    large_per_call = sum(per_call) / len(per_call)
    bare_per_call = [large["bare"]["cpu_seconds"] / large["bare"]["calls"] for large in yardsticks]
    outcome.add(
        Row(
            "ORG-200",
            "one large target, no-change, no limit (CPU per call)",
            seconds_text(yardsticks[0]["seconds"]),
            f"{large_per_call * 1000:.2f} ms CPU a call",
            "-",
            INFO,
            f"{yardsticks[0]['calls']} calls; before and after the organization's syncs "
            f"{per_call[0] * 1000:.2f} and {per_call[1] * 1000:.2f} ms (their mean is the "
            f"yardstick): the sync's CPU less the no-op's {startup_cpu:.2f} s",
        ),
        Row(
            "ORG-200",
            "the bare boto3 script, the same calls (CPU per call)",
            seconds_text(yardsticks[0]["bare"]["seconds"]),
            f"{sum(bare_per_call) / 2 * 1000:.2f} ms CPU a call",
            "-",
            INFO,
            f"before and after {bare_per_call[0] * 1000:.2f} and {bare_per_call[1] * 1000:.2f} "
            f"ms (its whole process); ORG-200's no-change calls would cost it "
            f"{sum(bare_per_call) / 2 * raw['no-change']['calls']:.0f} s of CPU",
        ),
    )
    for step in ("full", "no-change", "no-change, one process"):
        outcome.add(*_step_rows(raw, step, startup_cpu, large_per_call))
    one, two = raw["no-change, one process"], raw["no-change"]
    busy_one, busy_two = one["busy"], two["busy"]
    measured = busy_one["seconds"] > 0 and busy_two["seconds"] > 0
    busy_speed_up = busy_two["calls_per_second"] / busy_one["calls_per_second"] if measured else 0
    processes = processes_for(raw["targets"])  # what `sync` chose without --processes
    if not measured:
        result = verdict(False)
    else:
        result = verdict(busy_speed_up >= PROCESSES_SPEED_UP) if processes > 1 else INFO
    outcome.add(
        Row(
            "ORG-200",
            f"no-change / default processes ({processes}) vs one, busy phase",
            f"{busy_speed_up:.2f}x faster" if measured else "not measured",
            f"whole syncs {one['seconds'] / two['seconds']:.2f}x",
            f">= {PROCESSES_SPEED_UP}x when CPU-bound",
            result,
            f"{busy_two['calls_per_second']:.0f} vs {busy_one['calls_per_second']:.0f} calls/s "
            f"from {BUSY_FROM:.0%} to {BUSY_TO:.0%} of the calls, the emulator using "
            f"{busy_two['emulator_cores']:.2f} and {busy_one['emulator_cores']:.2f} of the "
            f"cores then; whole syncs {seconds_text(two['seconds'])} vs "
            f"{seconds_text(one['seconds'])}, {two['cpu_seconds']:.0f} vs "
            f"{one['cpu_seconds']:.0f} s CPU",
        )
    )
    return outcome


def _step_rows(
    raw: dict[str, Any], step: str, startup_cpu: float, large_per_call: float
) -> list[Row]:
    run = raw[step]
    calls = run["calls"]
    per_call = (run["cpu_seconds"] - startup_cpu) / calls
    rows = [
        Row(
            "ORG-200",
            f"{step} / wall, CPU",
            seconds_text(run["seconds"]),
            f"{per_call * 1000:.2f} ms CPU a call",
            f"<= {PER_CALL_FACTOR}x one large target's",
            verdict(per_call <= PER_CALL_FACTOR * large_per_call),
            f"{per_call / large_per_call:.2f}x; sync CPU {run['cpu_seconds']:.1f} s (user "
            f"{run['user_seconds']:.1f}, sys {run['sys_seconds']:.1f}); emulator CPU "
            f"{run['emulator_cpu_seconds']:.1f} s, moto {run['moto_cpu_seconds']:.1f} s; "
            f"1-min load {run['load_before']:.1f} before",
        ),
        Row(
            "ORG-200",
            f"{step} / calls, throttling, memory",
            f"{calls:.0f} calls",
            f"{run['throttled'] / max(1, run['attempts']):.1%} throttled",
            f"peak RSS < {PEAK_RSS_MB:.0f} MB",
            verdict(run["peak_rss_mb"] < PEAK_RSS_MB and run["product"]["failed"] == 0),
            f"largest process {run['peak_rss_mb']:.0f} MB, all processes at once "
            f"{run['tree_rss_mb']:.0f} MB; {run['product']['failed']} failed images; slowest "
            f"target {run['slowest_target_calls']:.0f} calls (floor "
            f"{seconds_text(run['slowest_target_calls'] / RATE_RPS)})",
        ),
    ]
    if step == "no-change":
        fits = run["seconds"] <= NO_CHANGE_WALL_S or run["cpu_seconds"] <= NO_CHANGE_CPU_S
        rows.append(
            Row(
                "ORG-200",
                "no-change / the target",
                seconds_text(run["seconds"]),
                f"sync CPU {run['cpu_seconds']:.0f} s",
                f"wall <= {NO_CHANGE_WALL_S:.0f} s, else sync CPU <= {NO_CHANGE_CPU_S:.0f} s",
                verdict(fits),
                "the emulator's CPU shares the two cores: the wall counts it, the sync's "
                "CPU does not",
            )
        )
    return rows
