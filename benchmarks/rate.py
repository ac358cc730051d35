"""RATE: issue 18's rate-control rows, the product against botocore's two retry modes.

Every run is a whole process against the emulator (a process of its own), every call held
20 ms. The product is `image-versions sync --json` at default settings (no `--max-rps`); the
yardsticks are bare_boto3.py (the product's calls, on as many threads) with botocore's
`standard` and `adaptive` retry modes, in the same run against the same emulator. Before each
run the emulator's buckets are refilled (as if the account had been idle: no waiting) and
its counts cleared; afterwards its own counts say how many attempts were throttled. A run's
seconds are its own (the sync's `seconds`, the script's from its client's set-up), so the
interpreter's start-up is left out; beside them, the span of its calls at the emulator (first
request to last reply: the rate control without the sync's fixed costs) and the process's
wall.

- Hard limits (`LIMITS`): L requests/s with a bucket of L (and 20 with a bucket of 1), about
  `rate_limit_seconds` x L images (at least 30, one page each): a first sync into a fresh data
  dir, a later sync after a small change, a no-change sync.
- Random throttles of 0 (the reference), 2, 5 and 10% of calls, no limit, `rate_random_images`
  images: a first sync, its seconds as a ratio to the same side's 0% run.
- A neighbour (8 and 15 requests/s) sharing a 20 requests/s bucket: first and no-change syncs;
  the neighbour's and our throttled shares, our seconds against our calls / (20 - neighbour).
- `rate_org_accounts` accounts side by side, each limited to 20/s with `rate_org_images`
  images: the product syncs them as an organization source (one process); each yardstick
  runs one script per account at once, with that account's credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalogue import CatalogueSpec, pages
from .commands import cli, sync_args
from .emulator_proc import EmulatorHandle, open_emulator
from .harness import Context, Outcome
from .measured import ProcessRun, load_average, run_measured
from .rate_rows import limit_rows, neighbour_rows, org_rows, random_rows, setup_row
from .served_org import served_organization
from .yardstick import bare_command

LATENCY_S = 0.02
VERSIONS = 5
"""Mean versions an image (1 to 9): one page each."""
MIN_IMAGES = 30
CHANGED_SHARE = 0.05
"""Versions changed before a later sync, as a share of the images."""
SIDES = ("product", "standard", "adaptive")
"""The product, and the bare script with botocore's standard and adaptive retry modes."""
STEPS = ("first", "later", "no-change")
NEIGHBOUR_STEPS = ("first", "no-change")
THROTTLE_SHARES = (0.0, 0.02, 0.05, 0.10)
NEIGHBOUR_LIMIT_RPS = 20.0
NEIGHBOUR_RPS = (8.0, 15.0)
ORG_LIMIT_RPS = 20.0
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Limit:
    """A hard limit: its rate, its bucket (None: one second of the rate), a neighbour."""

    rps: float
    capacity: float | None = None
    neighbour_rps: float | None = None

    def label(self) -> str:
        bucket = self.rps if self.capacity is None else self.capacity
        if self.neighbour_rps is None:
            return f"limit {self.rps:g}/s, bucket {bucket:g}"
        return f"neighbour {self.neighbour_rps:g}/s on a {self.rps:g}/s limit"

    def ours(self) -> float:
        """The rate the limit leaves us."""
        return self.rps - (self.neighbour_rps or 0.0)


LIMITS = (Limit(2.0), Limit(20.0), Limit(100.0), Limit(20.0, capacity=1.0))


def _command(side: str, url: str, home: Path) -> list[str]:
    """One side's sync of the emulator at `url` into `home` (data dir, or cursors file)."""
    if side == "product":
        return [*cli(), *sync_args(url, home, "--json")]
    return bare_command(url, home, retry_mode=side)


def _finished(command: Sequence[str], env: Mapping[str, str] | None) -> ProcessRun:
    return run_measured(command, env=env, timeout=RUN_TIMEOUT_S, ok_codes=(0, 1))


def measure(
    emulator: EmulatorHandle,
    commands: Sequence[tuple[Sequence[str], Mapping[str, str] | None]],
) -> dict[str, Any]:
    """Run the (command, environment) pairs at once from full buckets; the figures of the
    whole: the slowest process's seconds, the emulator's counts, each account's."""
    emulator.refill()
    emulator.clear()
    load = load_average()[0]
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        runs = list(pool.map(lambda pair: _finished(*pair), commands))
    counts = emulator.counts()
    summaries = [run.last_json() for run in runs]
    accounts = {
        account: {"calls": a["requests"] - a["errors"], "throttled": a["throttled"]}
        for account, a in counts["accounts"].items()
        if a["requests"]
    }
    neighbour = counts["neighbour"]
    return {
        "seconds": max(summary["seconds"] for summary in summaries),
        "wall": max(run.seconds for run in runs),
        "span": counts["span_seconds"],
        "cpu_seconds": sum(run.cpu_seconds for run in runs),
        "failed": sum(summary["failed"] for summary in summaries),
        "attempts": sum(counts["operations"].values()),
        "calls": sum(a["calls"] for a in accounts.values()),
        "throttled": counts["errors"].get("ThrottlingException", 0),
        "other_errors": sum(counts["errors"].values())
        - counts["errors"].get("ThrottlingException", 0),
        "own_throttled": sum(summary.get("throttled_retries", 0) for summary in summaries),
        "slowest_account_calls": max((a["calls"] for a in accounts.values()), default=0),
        "worst_account_share": max(
            (a["throttled"] / max(1, a["calls"]) for a in accounts.values()), default=0.0
        ),
        "accounts_served": len(accounts),
        "neighbour_attempts": neighbour["attempts"],
        "neighbour_throttled": neighbour["throttled"],
        "neighbour_seconds": neighbour["seconds"],
        "load_before": load,
        "accounts": accounts,
    }


def _spec(images: int) -> CatalogueSpec:
    return CatalogueSpec(images, VERSIONS, spread=True)


def _full_calls(counts: list[int]) -> int:
    return pages(len(counts)) + sum(pages(n) for n in counts)


def _limited(ctx: Context, limit: Limit, images: int, steps: tuple[str, ...]) -> dict[str, Any]:
    """Every side's syncs, step after step, against one emulator with `limit`."""
    with open_emulator() as emulator:
        counts = emulator.fill(_spec(images))
        emulator.faults(
            LATENCY_S, limit.rps, bucket_capacity=limit.capacity, neighbour_rps=limit.neighbour_rps
        )
        homes = {side: ctx.fresh_dir(f"rate-{side}") for side in SIDES}
        runs: dict[str, dict[str, Any]] = {}
        for step in steps:
            if step == "later":
                emulator.change(max(1, round(images * CHANGED_SHARE)), seed=1)
            runs[step] = {
                side: measure(emulator, [(_command(side, emulator.url, homes[side]), None)])
                for side in SIDES
            }
    return {"images": images, "full_calls": _full_calls(counts), "steps": runs}


def _random(ctx: Context) -> list[dict[str, dict[str, Any]]]:
    """Per repeat, per throttled share (as text), per side: one first sync."""
    repeats = []
    with open_emulator() as emulator:
        emulator.fill(_spec(ctx.sizes.rate_random_images))
        for _ in range(ctx.sizes.slow_repeats):  # botocore adaptive: a minute at 10%
            runs: dict[str, dict[str, Any]] = {}
            for share in THROTTLE_SHARES:
                emulator.faults(LATENCY_S, None, throttle_rate=share)
                runs[f"{share:.0%}"] = {
                    side: measure(
                        emulator, [(_command(side, emulator.url, ctx.fresh_dir("rate-r")), None)]
                    )
                    for side in SIDES
                }
            repeats.append(runs)
    return repeats


def _organization(ctx: Context) -> dict[str, Any]:
    """The product over every account as one organization source; each yardstick as one
    script per account, all at once; first, later and no-change syncs."""
    sizes = ctx.sizes
    with served_organization(sizes.rate_org_accounts) as served:
        emulator = served.emulator
        counts = served.fill(_spec(sizes.rate_org_images))
        emulator.faults(LATENCY_S, ORG_LIMIT_RPS)
        config = served.sources_file(ctx.fresh_dir("rate-org.toml"))
        product_dir = ctx.fresh_dir("rate-org-product")
        envs = {account: served.account_env(account) for account in served.accounts}
        cursors = {
            (side, account): ctx.fresh_dir(f"rate-org-{side}.json")
            for side in SIDES[1:]
            for account in served.accounts
        }
        runs: dict[str, dict[str, Any]] = {}
        for step in STEPS:
            if step == "later":  # the management account's catalogue
                emulator.change(max(1, round(sizes.rate_org_images * CHANGED_SHARE)), seed=1)
            product = [(served.sync_command(config, product_dir), served.env())]
            runs[step] = {"product": measure(emulator, product)}
            for side in SIDES[1:]:
                scripts = [
                    (bare_command(emulator.url, cursors[side, account], side), envs[account])
                    for account in served.accounts
                ]
                runs[step][side] = measure(emulator, scripts)
    return {
        "accounts": sizes.rate_org_accounts,
        "images": sizes.rate_org_images,
        "full_calls": [_full_calls(account) for account in counts],
        "organization_seconds": served.created_seconds,
        "steps": runs,
    }


def _limit_images(ctx: Context, limit: Limit) -> int:
    return max(MIN_IMAGES, round(ctx.sizes.rate_limit_seconds * limit.rps))


def rate(ctx: Context) -> Outcome:
    sizes = ctx.sizes
    repeats = sizes.slow_repeats
    raw: dict[str, Any] = {"latency_s": LATENCY_S, "sides": SIDES, "limits": {}, "neighbours": {}}
    outcome = Outcome(raw=raw)
    for limit in LIMITS:
        images = _limit_images(ctx, limit)
        runs = [_limited(ctx, limit, images, STEPS) for _ in range(repeats)]
        raw["limits"][limit.label()] = runs
        outcome.add(*limit_rows(limit.label(), limit.rps, runs))
    raw["random"] = _random(ctx)
    outcome.add(*random_rows(raw["random"]))
    for neighbour_rps in NEIGHBOUR_RPS:
        limit = Limit(NEIGHBOUR_LIMIT_RPS, neighbour_rps=neighbour_rps)
        images = sizes.rate_neighbour_images
        runs = [_limited(ctx, limit, images, NEIGHBOUR_STEPS) for _ in range(repeats)]
        raw["neighbours"][limit.label()] = runs
        outcome.add(*neighbour_rows(limit.label(), limit.rps, neighbour_rps, runs))
    raw["organization"] = [_organization(ctx) for _ in range(repeats)]
    outcome.add(*org_rows(ORG_LIMIT_RPS, raw["organization"]))
    outcome.rows.insert(0, setup_row(raw, repeats))
    return outcome
