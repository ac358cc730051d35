"""B4: a full sync of 1M versions (rows/s, CPU split, peak RSS); B5: no-change syncs over
10k and over 1M versions of history, with the same image count.

The syncs of B4 run in processes of their own (the emulator is in yet another), so each peak
RSS is that sync's own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .catalogue import CatalogueSpec
from .emulator_proc import EmulatorHandle, open_emulator
from .harness import (
    INFO,
    Context,
    Outcome,
    Row,
    Sizes,
    median,
    product_sync,
    run_json,
    seconds_text,
    verdict,
)

RSS_LIMIT_MB = 600
SHARE_LIMIT = 0.15
HISTORY_LIMIT = 1.2


def _child_sync(
    emulator: EmulatorHandle, module: str, data_dir: Path, *extra: str
) -> dict[str, Any]:
    """A sync in its own process; adds the process's wall time and the emulator's CPU."""
    cpu = emulator.cpu_seconds()
    seconds, result = run_json(
        [module, "--endpoint-url", emulator.url, "--data-dir", str(data_dir), *extra]
    )
    return result | {
        "process_seconds": seconds,
        "emulator_cpu_seconds": emulator.cpu_seconds() - cpu,
    }


def _no_change_syncs(
    ctx: Context, emulator: EmulatorHandle, data_dir: Path
) -> list[dict[str, float]]:
    """In-process syncs; with each, the CPU that this process and the emulator's used."""
    runs = []
    for _ in range(ctx.sizes.repeats):
        emulator_cpu, own_cpu = emulator.cpu_seconds(), time.process_time()
        seconds, report = product_sync(emulator.url, data_dir)
        if not report.ok or report.rows_written:
            raise RuntimeError(f"a no-change sync failed or wrote rows: {report.failures}")
        runs.append(
            {
                "seconds": seconds,
                "cpu_seconds": time.process_time() - own_cpu,
                "emulator_cpu_seconds": emulator.cpu_seconds() - emulator_cpu,
            }
        )
    return runs


def _small_history(ctx: Context) -> list[dict[str, float]]:
    """B5's 10k case: same images, few versions each; a full sync first, then no-change."""
    sizes = ctx.sizes
    with open_emulator() as emulator:
        emulator.fill(CatalogueSpec(sizes.bulk_images, sizes.small_history_versions))
        data_dir = ctx.fresh_dir("b5-small")
        product_sync(emulator.url, data_dir)
        return _no_change_syncs(ctx, emulator, data_dir)


def b4_b5(ctx: Context, wanted: frozenset[str]) -> dict[str, Outcome]:
    sizes = ctx.sizes
    small = _small_history(ctx) if "B5" in wanted else []
    with open_emulator() as emulator:
        emulator.fill(CatalogueSpec(sizes.bulk_images, sizes.bulk_versions))
        product = []
        for _ in range(sizes.slow_repeats if "B4" in wanted else 1):
            data_dir = ctx.fresh_dir("b4-product")
            product.append(_child_sync(emulator, "benchmarks.sync_child", data_dir, "--stages"))
        baseline = [
            _child_sync(emulator, "benchmarks.baseline", ctx.fresh_dir("b4-baseline"))
            for _ in range(sizes.slow_repeats if "B4" in wanted else 0)
        ]
        large = _no_change_syncs(ctx, emulator, data_dir) if "B5" in wanted else []
    versions = sizes.bulk_images * sizes.bulk_versions
    outcomes = {}
    if "B4" in wanted:
        outcomes["B4"] = _b4_outcome(product, baseline, versions)
    if "B5" in wanted:
        outcomes["B5"] = _b5_outcome(small, large, sizes)
    return outcomes


def _b4_outcome(
    product: list[dict[str, Any]], baseline: list[dict[str, Any]], versions: int
) -> Outcome:
    outcome = Outcome(raw={"versions": versions, "product": product, "baseline": baseline})
    rate = median([run["rows_written"] / run["seconds"] for run in product])
    baseline_rate = median([run["rows"] / run["seconds"] for run in baseline])
    shares = {
        stage: median([run["stages"][stage] / run["cpu_seconds"] for run in product])
        for stage in ("api", "normalise", "write", "other")
    }
    per_row = {
        stage: median([run["stages"][stage] / run["rows_written"] * 1e6 for run in product])
        for stage in ("api", "normalise", "write")
    }
    rss = median([run["peak_rss_mb"] for run in product])
    baseline_rss = median([run["peak_rss_mb"] for run in baseline])
    runs = f"{len(product)} run(s) of {seconds_text(median([r['seconds'] for r in product]))}"
    outcome.add(
        Row(
            "B4",
            "full sync / rows per second",
            f"{rate:,.0f} rows/s",
            f"{rate / baseline_rate:.2f}x baseline",
            "report",
            INFO,
            f"{runs}; baseline {baseline_rate:,.0f} rows/s; emulator CPU "
            f"{median([r['emulator_cpu_seconds'] / r['seconds'] for r in product]):.0%} of a core",
        ),
        Row(
            "B4",
            "full sync / normalise + write",
            f"{shares['normalise'] + shares['write']:.1%} of CPU",
            "-",
            f"<= {SHARE_LIMIT:.0%}",
            verdict(shares["normalise"] + shares["write"] <= SHARE_LIMIT),
            "CPU split: "
            + ", ".join(f"{name} {share:.1%}" for name, share in shares.items())
            + "; per row: "
            + ", ".join(f"{name} {micros:.1f} us" for name, micros in per_row.items()),
        ),
        Row(
            "B4",
            "full sync / peak RSS",
            f"{rss:,.0f} MB",
            f"{rss / baseline_rss:.2f}x baseline",
            f"< {RSS_LIMIT_MB} MB",
            verdict(rss < RSS_LIMIT_MB),
            f"baseline {baseline_rss:,.0f} MB (holds every row until its one write)",
        ),
    )
    return outcome


def _b5_outcome(
    small: list[dict[str, float]], large: list[dict[str, float]], sizes: Sizes
) -> Outcome:
    outcome = Outcome(raw={"small_history": small, "large_history": large})
    seconds, cpu, emulator = (
        [median([run[key] for run in case]) for case in (small, large)]
        for key in ("seconds", "cpu_seconds", "emulator_cpu_seconds")
    )
    for index, versions in enumerate((sizes.small_history_versions, sizes.bulk_versions)):
        ratio = seconds[index] / seconds[0]
        outcome.add(
            Row(
                "B5",
                f"no-change / {sizes.bulk_images * versions:,} versions",
                seconds_text(seconds[index]),
                f"{ratio:.2f}x the small case",
                f"<= {HISTORY_LIMIT}x" if index else "-",
                verdict(ratio <= HISTORY_LIMIT) if index else INFO,
                f"{sizes.bulk_images} images; CPU per sync: sync {cpu[index]:.2f} s, emulator "
                f"{emulator[index]:.2f} s (it filters every stored version of an image)",
            )
        )
    return outcome
