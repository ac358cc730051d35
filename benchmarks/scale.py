"""SCALE: the measured costs behind the scale-out estimate (docs/scaling.md), and the estimate.

No-change syncs of about 25 versions an image give the CPU of one call (CPU / calls) and the
bytes stored per row; a full sync of 500 versions an image, the CPU of one row ((CPU - its
calls x the call's) / rows). The estimate for ACCOUNTS x REGIONS x IMAGES images then follows
the sync's shape: targets one after another, each with its ListImages pages in sequence, a
role assumption, and its images `concurrency` at a time.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from pipeline.defaults import CONCURRENCY
from pipeline.run import SyncReport

from .api import api_catalogue
from .catalogue import CatalogueSpec
from .emulator_proc import open_emulator
from .harness import INFO, Context, Outcome, Row, median, product_sync

ACCOUNTS, REGIONS, IMAGES = 50, 4, 500
LATENCIES_S = (0.05, 0.1)
WIDE_CONCURRENCY = 64


def _bytes_on_disk(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*.parquet"))


def _full_sync_cpu(ctx: Context, spec: CatalogueSpec, label: str) -> tuple[Path, SyncReport, float]:
    """A full sync of `spec` in this process: its data dir, report and CPU seconds."""
    with open_emulator() as emulator:
        emulator.fill(spec)
        data_dir = ctx.fresh_dir(label)
        cpu = time.process_time()
        _, report = product_sync(emulator.url, data_dir)
        return data_dir, report, time.process_time() - cpu


def _measure(ctx: Context) -> dict[str, float]:
    images = ctx.sizes.api_images
    with open_emulator() as emulator:
        emulator.fill(api_catalogue(images))
        data_dir = ctx.fresh_dir("scale")
        _, full = product_sync(emulator.url, data_dir)
        per_call = []
        for _ in range(ctx.sizes.repeats):
            cpu = time.process_time()
            _, report = product_sync(emulator.url, data_dir)
            per_call.append((time.process_time() - cpu) / report.stats.total_calls)
    call_s = median(per_call)
    # The cost of a row, from a catalogue where rows outweigh calls (500 versions an image):
    # on about 25 versions an image it would be a small difference of two noisy figures.
    _, bulk, bulk_cpu = _full_sync_cpu(ctx, CatalogueSpec(max(1, images // 5), 500), "scale-rows")
    rows = full.rows_written
    return {
        "images": images,
        "full_calls": full.stats.total_calls,
        "rows": rows,
        "call_cpu_s": call_s,
        "row_cpu_s": (bulk_cpu - bulk.stats.total_calls * call_s) / bulk.rows_written,
        "row_sample": bulk.rows_written,
        "bytes_per_row": _bytes_on_disk(data_dir / "image_versions") / rows,
    }


def estimate(measured: dict[str, float], latency_s: float, concurrency: int) -> dict[str, float]:
    """Calls, CPU and wall seconds of a no-change and a full sync of the estimate's size."""
    targets = ACCOUNTS * REGIONS
    images = targets * IMAGES
    list_images = targets * math.ceil(IMAGES / 100)
    # Pages per image and rows per image as in the measured catalogue (about 25 versions).
    scale = images / measured["images"]
    versions_calls_full = (measured["full_calls"] - math.ceil(measured["images"] / 100)) * scale
    rows_full = measured["rows"] * scale
    sequential = targets * (latency_s + math.ceil(IMAGES / 100) * latency_s)  # role + ListImages

    def wall(version_calls: float, cpu: float) -> float:
        return max(cpu, sequential + version_calls * latency_s / concurrency)

    nochange_calls = list_images + images
    full_calls = list_images + versions_calls_full
    nochange_cpu = nochange_calls * measured["call_cpu_s"]
    full_cpu = full_calls * measured["call_cpu_s"] + rows_full * measured["row_cpu_s"]
    return {
        "nochange_calls": nochange_calls,
        "full_calls": full_calls,
        "rows_full": rows_full,
        "nochange_cpu_s": nochange_cpu,
        "full_cpu_s": full_cpu,
        "nochange_wall_s": wall(images, nochange_cpu),
        "full_wall_s": wall(versions_calls_full, full_cpu),
        "full_mb": rows_full * measured["bytes_per_row"] / 1e6,
    }


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def scale(ctx: Context) -> Outcome:
    measured = _measure(ctx)
    outcome = Outcome(raw={"measured": measured})
    outcome.add(
        Row(
            "SCALE",
            "measured CPU per call (no-change sync)",
            f"{measured['call_cpu_s'] * 1000:.2f} ms",
            "-",
            "report",
            INFO,
            f"{ctx.sizes.repeats} no-change syncs of {measured['images']:,} images; everything "
            "included (HTTP, botocore, state, views)",
        ),
        Row(
            "SCALE",
            "measured CPU per row (full sync)",
            f"{measured['row_cpu_s'] * 1e6:.1f} us",
            "-",
            "report",
            INFO,
            f"full sync of {measured['row_sample']:,.0f} rows (500 an image), less its calls "
            "at the rate above",
        ),
        Row(
            "SCALE",
            "measured Parquet bytes per row",
            f"{measured['bytes_per_row']:.0f} B",
            "-",
            "report",
            INFO,
            "zstd, one file per partition and sync",
        ),
    )
    runs = [(latency, CONCURRENCY) for latency in LATENCIES_S]
    runs.append((LATENCIES_S[-1], WIDE_CONCURRENCY))
    for latency, concurrency in runs:
        figures = estimate(measured, latency, concurrency)
        outcome.raw[f"estimate L={latency} concurrency={concurrency}"] = figures
        outcome.add(
            Row(
                "SCALE",
                f"{ACCOUNTS}x{REGIONS}x{IMAGES}, L={latency * 1000:.0f} ms, {concurrency} workers",
                _minutes(figures["nochange_wall_s"]),
                f"full {_minutes(figures['full_wall_s'])}",
                "estimate",
                INFO,
                f"no-change {figures['nochange_calls']:,.0f} calls, "
                f"{figures['nochange_cpu_s']:.0f} s CPU; full {figures['full_calls']:,.0f} calls, "
                f"{figures['rows_full'] / 1e6:.1f}M rows, {figures['full_cpu_s']:.0f} s CPU, "
                f"{figures['full_mb']:.0f} MB",
            )
        )
    return outcome
