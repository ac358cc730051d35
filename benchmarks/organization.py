"""ORG: an organization of many rate-limited accounts, synced the way the product syncs many
accounts (an organization source in a sources file) at default settings.

moto's server plays STS and Organizations (moto_proc.py); one emulator process serves every
account, each with its own catalogue of about `org_images` images and its own limit of 20
requests/s, every call held 20 ms. Each sync is a real `image-versions sync` process measured
from outside (wall, CPU, peak RSS: its own, see measured.py); the emulator's and moto's CPU
are read from their own processes, so they never count as the sync's.

Yardsticks: the slowest target's floor (its calls / 20: no sync of that account can be
faster), the sum of every target's floor (targets one after another at the limit), and the
CPU floor: the sync's CPU per call, from the same syncs without a rate limit less a no-op
sync's CPU, times the calls. Target: wall <= 1.3 x max(slowest floor, CPU floor) + start-up
(a no-op sync process). A sync of the organization in a region where no account has an image
splits that CPU into a cost per target (role, client, one ListImages) and a cost per call.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .api import BUCKET_REFILL_S, RATE_RPS
from .catalogue import CatalogueSpec, pages
from .commands import cli, sync_args
from .emulator_proc import EmulatorHandle, open_emulator
from .harness import INFO, Context, Outcome, Row, median, medians, seconds_text, verdict
from .measured import load_average, run_measured
from .served_org import ServedOrganization, served_organization

LATENCY_S = 0.02
VERSIONS = 10
"""Mean versions an image (1 to 19): one page each."""
TARGET_FACTOR = 1.3
SYNC_TIMEOUT_S = 3600.0
"""Today's targets run one after another and are throttled hard: minutes at full size."""
BUSY_FROM, BUSY_TO = 0.1, 0.9
"""The busy phase of a sync: from the call that makes 10% of its calls to the one that makes
90%, past the start (accounts listed, clients made, state read) and the tail (the last
targets alone, at their accounts' limits)."""
STEPS = ("full", "no-change")
EMPTY_REGION = "eu-west-1"
"""A region in which no account has an image."""


class MeasuredOrganization:
    """The organization's servers and sources file; measures its syncs."""

    def __init__(self, ctx: Context, served: ServedOrganization) -> None:
        self.ctx, self.served = ctx, served
        self.moto, self.emulator = served.moto, served.emulator
        self.config = served.sources_file(ctx.fresh_dir("org-sources.toml"))
        self.env = served.env()

    def full_then_no_change(self, label: str) -> dict[str, dict[str, Any]]:
        """A full sync into a fresh data dir, then a no-change one, each with full buckets."""
        data_dir = self.ctx.fresh_dir(label)
        return {step: self.sync(data_dir) for step in STEPS}

    def sync(self, data_dir: Path, *options: str) -> dict[str, Any]:
        time.sleep(BUCKET_REFILL_S)  # every account's bucket is full when the sync starts
        self.emulator.clear()
        loads = load_average()
        emulator_cpu, moto_cpu = self.emulator.cpu_seconds(), self.moto.cpu_seconds()
        with _Progress(self.emulator) as progress:
            run = run_measured(
                self.served.sync_command(self.config, data_dir, *options),
                env=self.env,
                timeout=SYNC_TIMEOUT_S,
                ok_codes=(0, 1),  # 1: some image failed; counted below
            )
        counts = self.emulator.counts()
        calls_of = {
            account: served["requests"] - served["errors"]
            for account, served in counts["accounts"].items()
        }
        summary = run.last_json()
        return {
            **run.figures(),
            "load_before": loads[0],
            "load_averages_before": loads,
            "emulator_cpu_seconds": self.emulator.cpu_seconds() - emulator_cpu,
            "moto_cpu_seconds": self.moto.cpu_seconds() - moto_cpu,
            "attempts": sum(served["requests"] for served in counts["accounts"].values()),
            "calls": sum(calls_of.values()),
            "throttled": counts["errors"].get("ThrottlingException", 0),
            "slowest_target_calls": max(calls_of.values()),
            "targets_served": sum(1 for calls in calls_of.values() if calls),
            "busy": busy_phase(progress.samples),
            "product": {
                key: summary[key]
                for key in ("api_calls", "throttled_retries", "failed", "images", "seconds")
            },
        }


class _Progress:
    """Polls the emulator's replies and CPU while a sync runs (the only user of its pipe
    then: the caller waits on the sync), as (monotonic seconds, replies, emulator CPU)."""

    POLL_S = 0.5

    def __init__(self, emulator: EmulatorHandle) -> None:
        self.emulator = emulator
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while True:
            self.samples.append((time.monotonic(), *self.emulator.progress()))
            if self._stop.wait(self.POLL_S):
                return

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), *self.emulator.progress()))  # the last calls


def busy_phase(samples: list[tuple[float, int, float]]) -> dict[str, float]:
    """Calls answered a second and the emulator's cores in use over the busy phase
    (BUSY_FROM to BUSY_TO of the calls), when the sync is bound by its CPU if by anything
    of its own; zeros when too few samples fall in it."""
    total = samples[-1][1] if samples else 0
    start = next((s for s in samples if s[1] >= BUSY_FROM * total), None)
    end = next((s for s in samples if s[1] >= BUSY_TO * total), None)
    if start is None or end is None or end[0] <= start[0]:
        return {"seconds": 0.0, "calls_per_second": 0.0, "emulator_cores": 0.0}
    seconds = end[0] - start[0]
    return {
        "seconds": seconds,
        "calls_per_second": (end[1] - start[1]) / seconds,
        "emulator_cores": (end[2] - start[2]) / seconds,
    }


def startup_runs(ctx: Context) -> list[dict[str, Any]]:
    """No-op sync processes (an emulator without images): the start-up in the target, and the
    CPU that every sync spends whatever it syncs."""
    runs = []
    with open_emulator() as empty:
        for _ in range(ctx.sizes.repeats):
            run = run_measured([*cli(), *sync_args(empty.url, ctx.fresh_dir("org-noop"))])
            runs.append(run.figures())
    return runs


def _measure(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    raw: dict[str, Any] = {
        "targets": sizes.org_targets,
        "images": sizes.org_images,
        "latency_s": LATENCY_S,
        "rate_limit_rps": RATE_RPS,
        "startup": startup_runs(ctx),
    }
    with served_organization(sizes.org_targets) as served:
        raw["organization_seconds"] = served.created_seconds
        emulator = served.emulator
        began = time.perf_counter()
        counts = served.fill(CatalogueSpec(sizes.org_images, VERSIONS, spread=True))
        raw["catalogue_seconds"] = time.perf_counter() - began
        raw["full_calls_per_target"] = [
            pages(len(versions)) + sum(pages(n) for n in versions) for versions in counts
        ]
        organization = MeasuredOrganization(ctx, served)
        emulator.faults(latency_s=LATENCY_S)
        raw["empty_region"] = organization.sync(
            ctx.fresh_dir("org-empty"), "--region", EMPTY_REGION
        )
        raw["unlimited"] = [
            organization.full_then_no_change("org-unlimited") for _ in range(sizes.slow_repeats)
        ]
        emulator.faults(latency_s=LATENCY_S, rate_limit_rps=RATE_RPS)
        raw["limited"] = [
            organization.full_then_no_change("org-limited") for _ in range(sizes.slow_repeats)
        ]
    return raw


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median of every numeric figure of `runs` (the product's own counts included)."""
    return medians(
        [{**run, **{f"product_{k}": v for k, v in run["product"].items()}} for run in runs]
    )


def org(ctx: Context) -> Outcome:
    return _outcome(_measure(ctx))


def _outcome(raw: dict[str, Any]) -> Outcome:
    outcome = Outcome(raw=raw)
    startup = median([run["seconds"] for run in raw["startup"]])
    startup_cpu = median([run["cpu_seconds"] for run in raw["startup"]])
    startup_rss = median([run["peak_rss_mb"] for run in raw["startup"]])
    per_target = raw["full_calls_per_target"]
    empty = raw["empty_region"]
    target_cpu = (empty["cpu_seconds"] - startup_cpu) / raw["targets"]
    outcome.add(
        Row(
            "ORG",
            "set-up",
            f"{raw['targets']} targets",
            "-",
            "-",
            INFO,
            f"{raw['targets']} accounts x {raw['images']} images (1-{2 * VERSIONS - 1} versions), "
            f"{min(per_target)}-{max(per_target)} calls a target for a full sync; "
            f"organization made in moto in {raw['organization_seconds']:.1f} s, catalogues "
            f"filled in {raw['catalogue_seconds']:.1f} s; {LATENCY_S * 1000:.0f} ms a call",
        ),
        Row(
            "ORG",
            "start-up (no-op sync process)",
            seconds_text(startup),
            "-",
            "-",
            INFO,
            f"median of {len(raw['startup'])}; CPU {startup_cpu:.2f} s; peak RSS "
            f"{startup_rss:.0f} MB",
        ),
        Row(
            "ORG",
            "CPU a target (a region without images)",
            f"{target_cpu:.3f} s",
            "-",
            "report",
            INFO,
            f"sync CPU {empty['cpu_seconds']:.1f} s less the no-op's, over {raw['targets']} "
            f"targets (role, client, one ListImages each); wall {seconds_text(empty['seconds'])}"
            f", peak RSS {empty['peak_rss_mb']:.0f} MB",
        ),
    )
    for step in STEPS:
        unlimited = _medians([repeat[step] for repeat in raw["unlimited"]])
        limited = _medians([repeat[step] for repeat in raw["limited"]])
        call_cpu = max(0.0, unlimited["cpu_seconds"] - startup_cpu) / unlimited["calls"]
        # What a call costs once the targets' own cost is paid: the region without images
        # made one ListImages call a target.
        listing_cpu = (unlimited["cpu_seconds"] - empty["cpu_seconds"]) / (
            unlimited["calls"] - empty["calls"]
        )
        rows = _step_rows(step, unlimited, limited, call_cpu, startup, listing_cpu)
        outcome.add(*rows)
    return outcome


def _step_rows(
    step: str,
    unlimited: dict[str, float],
    limited: dict[str, float],
    call_cpu: float,
    startup: float,
    listing_cpu: float,
) -> list[Row]:
    wall, calls = limited["seconds"], limited["calls"]
    slowest = limited["slowest_target_calls"] / RATE_RPS
    every = calls / RATE_RPS
    cpu_floor = call_cpu * calls
    bound = max(slowest, cpu_floor)
    limit = TARGET_FACTOR * bound + startup
    failed = int(limited["product_failed"])
    load = f"1-min load {limited['load_before']:.1f} before"
    return [
        Row(
            "ORG",
            f"{step} / no rate limit (CPU per call)",
            seconds_text(unlimited["seconds"]),
            f"{call_cpu * 1000:.2f} ms CPU a call",
            "-",
            INFO,
            f"sync CPU {unlimited['cpu_seconds']:.1f} s less the no-op's, over "
            f"{unlimited['calls']:.0f} calls ({listing_cpu * 1000:.2f} ms a call once the targets"
            f"' own cost is paid); emulator CPU {unlimited['emulator_cpu_seconds']:.1f} s, moto "
            f"{unlimited['moto_cpu_seconds']:.1f} s; peak RSS {unlimited['peak_rss_mb']:.0f} MB",
        ),
        Row(
            "ORG",
            f"{step} / {RATE_RPS:.0f} rps an account, default settings",
            seconds_text(wall),
            f"{(wall - startup) / bound:.2f}x max(floors)",
            f"<= {TARGET_FACTOR}x max(slowest, CPU floor) + start-up",
            verdict(wall <= limit and failed == 0),
            f"limit {seconds_text(limit)}; slowest target's floor {seconds_text(slowest)} "
            f"({limited['slowest_target_calls']:.0f} calls / {RATE_RPS:.0f}); CPU floor "
            f"{seconds_text(cpu_floor)} ({call_cpu * 1000:.2f} ms x {calls:.0f} calls); "
            f"start-up {seconds_text(startup)}; {failed} failed images; {load}",
        ),
        Row(
            "ORG",
            f"{step} / vs the sum of the targets' floors",
            seconds_text(wall),
            f"{wall / every:.2f}x sum",
            "-",
            INFO,
            f"sum {seconds_text(every)} = {calls:.0f} calls / {RATE_RPS:.0f} over "
            f"{limited['targets_served']:.0f} targets (targets one after another at the limit)",
        ),
        Row(
            "ORG",
            f"{step} / calls, throttling, CPU, memory",
            f"{calls:.0f} calls",
            f"{limited['throttled'] / limited['attempts']:.1%} throttled",
            "report",
            INFO,
            f"{limited['attempts']:.0f} attempts, {limited['throttled']:.0f} throttled (the "
            f"sync counted {limited['product_throttled_retries']:.0f}, and "
            f"{limited['product_api_calls']:.0f} calls with ListAccounts); sync CPU "
            f"{limited['cpu_seconds']:.1f} s, peak RSS {limited['peak_rss_mb']:.0f} MB; emulator "
            f"CPU {limited['emulator_cpu_seconds']:.1f} s, moto "
            f"{limited['moto_cpu_seconds']:.1f} s (their own processes)",
        ),
    ]
