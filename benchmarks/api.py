"""B1-B3: API calls against their floor, latency-bound and rate-limited syncs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import AccessSettings
from pipeline.defaults import CONCURRENCY

from . import yardstick
from .baseline import run_baseline
from .catalogue import CatalogueSpec, floor_calls, image_name, pages
from .emulator_proc import EmulatorHandle, open_emulator
from .harness import (
    INFO,
    Context,
    Outcome,
    Row,
    median,
    product_sync,
    seconds_text,
    verdict,
)

LATENCY_S = 0.03
WORKERS = CONCURRENCY  # the floor's divisor: images listed in parallel by default
SPEEDUP_TARGET = 8.0
RATE_RPS = 20.0
CHANGED_SHARE = 0.01
API_OPERATIONS = ("ListImages", "ListImageVersions")


def api_catalogue(images: int, seed: int = 0) -> CatalogueSpec:
    """About 25 versions an image: most 1-37, every 50th image 300 (three pages)."""
    return CatalogueSpec(images, 19, spread=True, big_every=50, big_versions=300, seed=seed)


@dataclass(frozen=True)
class Measured:
    """One sync (product or baseline): wall time and what the emulator saw."""

    seconds: float
    calls: int
    """Requests answered with success: API calls, retries excluded."""
    per_image: dict[str, int]
    throttled: int
    product_calls: int | None = None
    """The product's own count (report.stats), to cross-check."""
    rows_written: int | None = None
    failures: int = 0

    def raw(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "calls": self.calls,
            "throttled": self.throttled,
            "product_calls": self.product_calls,
            "rows_written": self.rows_written,
            "failures": self.failures,
        }


def _observe(emulator: EmulatorHandle, seconds: float, **extra: Any) -> Measured:
    counts = emulator.counts()
    errors = sum(counts["errors"].values())
    requests = sum(counts["operations"].get(op, 0) for op in API_OPERATIONS)
    return Measured(
        seconds=seconds,
        calls=requests - errors,
        per_image=counts["per_image"],
        throttled=counts["errors"].get("ThrottlingException", 0),
        **extra,
    )


def measure_product(
    emulator: EmulatorHandle, data_dir: Path, access: AccessSettings | None = None
) -> Measured:
    emulator.clear()
    seconds, report = product_sync(emulator.url, data_dir, access)
    return _observe(
        emulator,
        seconds,
        product_calls=report.stats.total_calls,
        rows_written=report.rows_written,
        failures=len(report.failures),
    )


def measure_baseline(emulator: EmulatorHandle, data_dir: Path) -> Measured:
    """A baseline run; one whose call fails for good (retries spent) counts one failure."""
    from botocore.exceptions import ClientError

    emulator.clear()
    started = time.perf_counter()
    try:
        run_baseline(emulator.url, data_dir)
    except ClientError:
        return _observe(emulator, time.perf_counter() - started, failures=1)
    return _observe(emulator, time.perf_counter() - started)


# ---------------------------------------------------------------- B1


def _over_floor(measured: Measured, listed: dict[str, int], images: int) -> int:
    """Calls above the per-image floor, summed over images."""
    return sum(
        max(0, measured.per_image.get(image_name(i), 0) - pages(listed.get(image_name(i), 0)))
        for i in range(images)
    )


def _must_list(step: str, counts: list[int], emulator: EmulatorHandle, seed: int) -> dict[str, int]:
    """Versions per image that the step's sync must list; the 1%-changed step changes the
    catalogue first."""
    if step == "full":
        return {image_name(i): n for i, n in enumerate(counts)}
    if step == "no-change":
        return {}
    return emulator.change(round(sum(counts) * CHANGED_SHARE), seed)


def _b1_repeat(ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
    """Full, no-change and 1%-changed syncs of the product and the baseline, side by side."""
    images = ctx.sizes.api_images
    product_dir, baseline_dir = ctx.fresh_dir("b1-product"), ctx.fresh_dir("b1-baseline")
    steps: dict[str, dict[str, Any]] = {}
    with open_emulator() as emulator:
        counts = emulator.fill(api_catalogue(images, seed))
        for step in ("full", "no-change", "1% changed"):
            listed = _must_list(step, counts, emulator, seed)
            floor = sum(floor_calls(images, listed).values())
            product = measure_product(emulator, product_dir)
            baseline = measure_baseline(emulator, baseline_dir)
            steps[step] = {
                "floor": floor,
                "listed": sum(listed.values()),
                "product": product.raw() | {"over_floor": _over_floor(product, listed, images)},
                "baseline": baseline.raw() | {"over_floor": _over_floor(baseline, listed, images)},
            }
    return steps


def b1(ctx: Context) -> Outcome:
    outcome = Outcome()
    repeats = [_b1_repeat(ctx, seed) for seed in range(ctx.sizes.repeats)]
    outcome.raw = {"images": ctx.sizes.api_images, "repeats": repeats}
    for step in repeats[0]:
        runs = [repeat[step] for repeat in repeats]
        floors = [run["floor"] for run in runs]
        for side in ("product", "baseline"):
            calls = [run[side]["calls"] for run in runs]
            over = sum(run[side]["over_floor"] for run in runs)
            exact = calls == floors and over == 0
            ratio = median([c / f for c, f in zip(calls, floors, strict=True)])
            note = f"{over} calls over per-image floors; {median(floors):.0f} floor"
            if side == "product":
                stats = [run[side]["product_calls"] for run in runs]
                written = [run[side]["rows_written"] for run in runs]
                listed = [run["listed"] for run in runs]
                note += f"; report.stats agrees: {stats == calls}; rows written = "
                note += f"versions new or changed: {written == listed}"
            note += f"; {seconds_text(median([run[side]['seconds'] for run in runs]))}"
            outcome.add(
                Row(
                    "B1",
                    f"{step} / {side}",
                    f"{median(calls):.0f} calls",
                    f"{ratio:.3f}x floor",
                    "= floor" if side == "product" else "-",
                    verdict(exact) if side == "product" else INFO,
                    note,
                )
            )
    return outcome


# ---------------------------------------------------------------- B2


def _b2_runs(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    with open_emulator() as emulator, open_emulator() as empty:
        emulator.fill(api_catalogue(sizes.api_images))
        emulator.faults(latency_s=LATENCY_S)
        startup = [
            product_sync(empty.url, ctx.fresh_dir("b2-noop"))[0] for _ in range(sizes.repeats)
        ]
        product = _full_then_no_change(ctx, emulator, measure_product, sizes.latency_repeats)
        baseline = _full_then_no_change(ctx, emulator, measure_baseline, sizes.slow_repeats)
        processes = yardstick.measure(ctx, emulator, LATENCY_S)
    return {"startup": startup, "product": product, "baseline": baseline, "processes": processes}


def _full_then_no_change(
    ctx: Context,
    emulator: EmulatorHandle,
    measure: Callable[[EmulatorHandle, Path], Measured],
    repeats: int,
) -> list[dict[str, Any]]:
    """`repeats` times, into a fresh data dir: a full sync, then a no-change one."""
    runs = []
    for _ in range(repeats):
        data_dir = ctx.fresh_dir(f"b2-{measure.__name__}")
        full = measure(emulator, data_dir)
        runs.append({"full": full.raw(), "no-change": measure(emulator, data_dir).raw()})
    return runs


def b2(ctx: Context) -> Outcome:
    runs = _b2_runs(ctx)
    outcome = Outcome(raw={"images": ctx.sizes.api_images, "latency_s": LATENCY_S, **runs})
    startup = median(runs["startup"])
    outcome.add(
        Row(
            "B2",
            "start-up (no-op sync, in process)",
            seconds_text(startup),
            "-",
            "-",
            INFO,
            f"median of {len(runs['startup'])}",
        )
    )
    for step in ("full", "no-change"):
        outcome.add(*_b2_rows(step, runs, startup, pages(ctx.sizes.api_images)))
    outcome.add(*yardstick.rows(runs["processes"], LATENCY_S, WORKERS))
    return outcome


def _b2_rows(step: str, runs: dict[str, Any], startup: float, list_pages: int) -> list[Row]:
    times = [run[step]["seconds"] for run in runs["product"]]
    product = median(times)
    baseline = median([run[step]["seconds"] for run in runs["baseline"]])
    calls = median([run[step]["calls"] for run in runs["product"]])
    floor = calls * LATENCY_S / WORKERS + startup
    sequential = list_pages * LATENCY_S * (1 - 1 / WORKERS)
    return [
        Row(
            "B2",
            f"{step} / product vs baseline",
            seconds_text(product),
            f"{baseline / product:.2f}x faster",
            f">= {SPEEDUP_TARGET:.0f}x",
            verdict(baseline / product >= SPEEDUP_TARGET),
            f"baseline {seconds_text(baseline)} ({len(runs['baseline'])} run(s), "
            f"{median([run[step]['calls'] for run in runs['baseline']]):.0f} calls); "
            f"a product at its floor would be {baseline / floor:.2f}x faster",
        ),
        Row(
            "B2",
            f"{step} / product vs floor",
            seconds_text(product),
            f"{product / floor:.2f}x floor",
            "<= 1.25x floor",
            verdict(product <= 1.25 * floor),
            f"floor {seconds_text(floor)} = {calls:.0f} calls x {LATENCY_S * 1000:.0f} ms / "
            f"{WORKERS} + start-up; runs {min(times):.2f}-{max(times):.2f} s; the "
            f"{list_pages} ListImages pages are sequential ({sequential:.2f} s over the formula)",
        ),
    ]


# ---------------------------------------------------------------- B3

RATE_VARIANTS: dict[str, AccessSettings] = {
    "standard, no cap (default)": AccessSettings(),
    "standard, max_rps=20": AccessSettings(max_rps=RATE_RPS),
    "adaptive, no cap": AccessSettings(retry_mode="adaptive"),
    "adaptive, max_rps=20": AccessSettings(retry_mode="adaptive", max_rps=RATE_RPS),
}
BUCKET_REFILL_S = 1.2


def _b3_runs(ctx: Context) -> tuple[int, dict[str, list[Measured]]]:
    sizes = ctx.sizes
    results: dict[str, list[Measured]] = {name: [] for name in [*RATE_VARIANTS, "baseline"]}
    with open_emulator() as emulator:
        counts = emulator.fill(api_catalogue(sizes.rate_images))
        floor = sum(
            floor_calls(
                sizes.rate_images, {image_name(i): n for i, n in enumerate(counts)}
            ).values()
        )
        emulator.faults(rate_limit_rps=RATE_RPS)
        for _ in range(sizes.repeats):
            for name, access in RATE_VARIANTS.items():
                time.sleep(BUCKET_REFILL_S)  # every run starts with the server's bucket full
                results[name].append(measure_product(emulator, ctx.fresh_dir("b3"), access))
            time.sleep(BUCKET_REFILL_S)
            results["baseline"].append(measure_baseline(emulator, ctx.fresh_dir("b3-baseline")))
    return floor, results


def b3(ctx: Context) -> Outcome:
    floor, results = _b3_runs(ctx)
    outcome = Outcome(
        raw={
            "images": ctx.sizes.rate_images,
            "rate_limit_rps": RATE_RPS,
            "floor_calls": floor,
            "runs": {name: [m.raw() for m in runs] for name, runs in results.items()},
        }
    )
    budget = floor / RATE_RPS
    for name, runs in results.items():
        seconds = median([m.seconds for m in runs])
        throttled = median([m.throttled / max(1, m.calls) for m in runs])
        failures = sum(m.failures for m in runs)
        ok = seconds <= 1.1 * budget and throttled <= 0.02 and failures == 0
        outcome.add(
            Row(
                "B3",
                name if name == "baseline" else f"product, {name}",
                seconds_text(seconds),
                f"{seconds / budget:.2f}x calls/{RATE_RPS:.0f}",
                "-" if name == "baseline" else "<= 1.1x, <= 2% throttled",
                INFO if name == "baseline" else verdict(ok),
                f"throttled {throttled:.1%} of {median([m.calls for m in runs]):.0f} calls; "
                f"{failures} failed images; calls/{RATE_RPS:.0f} = {seconds_text(budget)}",
            )
        )
    return outcome
