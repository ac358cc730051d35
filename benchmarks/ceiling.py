"""EMU: the emulator's own ceiling, and whether running it in the sync's process costs the sync.

The ceiling is the ListImageVersions requests per second that the emulator serves, with no
latency, to several processes of concurrent boto3 clients (one-page images of about 25
versions, like B1-B3). It is compared with the fastest request rate a sync reaches (a full
sync without latency), measured here too, with the emulator in this process and in its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from pipeline.emulator import Emulator

from .api import api_catalogue
from .catalogue import REGION, CatalogueSpec, fill, image_name
from .emulator_proc import EmulatorHandle, open_emulator
from .harness import INFO, Context, Outcome, Row, median, product_sync, seconds_text, verdict

CEILING_CATALOGUE = CatalogueSpec(100, 25)
LOAD_PROCESSES = 3
LOAD_THREADS = 4
LOAD_START_DELAY_S = 3.0
HANDLER_SECONDS = 1.0


def _load(emulator: EmulatorHandle, seconds: float) -> dict[str, float]:
    """Requests per second served to LOAD_PROCESSES x LOAD_THREADS clients, and the emulator
    process's CPU use meanwhile (a fraction of one core)."""
    start_at = time.time() + LOAD_START_DELAY_S
    args = [
        "--endpoint-url",
        emulator.url,
        "--images",
        str(CEILING_CATALOGUE.images),
        "--threads",
        str(LOAD_THREADS),
        "--start-at",
        str(start_at),
        "--seconds",
        str(seconds),
    ]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(LOAD_PROCESSES)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    cpu = emulator.cpu_seconds()
    requests = sum(json.loads(child.communicate(timeout=120)[0])["requests"] for child in children)
    busy = (emulator.cpu_seconds() - cpu) / seconds
    return {"requests_per_s": requests / seconds, "emulator_cpu_share": busy}


def _handler_rate() -> float:
    """Requests per second of the emulator's request handler alone: no HTTP, no client."""
    emulator = Emulator()
    fill(emulator, CEILING_CATALOGUE)
    bodies = [
        json.dumps({"ImageName": image_name(i), "MaxResults": 100}).encode()
        for i in range(CEILING_CATALOGUE.images)
    ]
    done, deadline = 0, time.perf_counter() + HANDLER_SECONDS
    while time.perf_counter() < deadline:
        emulator.handle_request("ListImageVersions", bodies[done % len(bodies)], REGION)
        done += 1
    return done / HANDLER_SECONDS


def _sync_rates(ctx: Context, in_process: bool) -> list[dict[str, float]]:
    """Full syncs without latency (B1's catalogue): the fastest a sync calls the API."""
    runs = []
    for _ in range(ctx.sizes.repeats):
        with open_emulator(in_process) as emulator:
            emulator.fill(api_catalogue(ctx.sizes.api_images))
            seconds, report = product_sync(emulator.url, ctx.fresh_dir("emu-sync"))
            runs.append({"seconds": seconds, "calls": float(report.stats.total_calls)})
    return runs


def emulator_ceiling(ctx: Context) -> Outcome:
    loads: dict[str, Any] = {}
    for in_process in (False, True):
        with open_emulator(in_process) as emulator:
            emulator.fill(CEILING_CATALOGUE)
            label = "in process" if in_process else "own process"
            loads[label] = _load(emulator, ctx.sizes.load_seconds)
    handler = _handler_rate()
    syncs = {
        label: _sync_rates(ctx, in_process)
        for label, in_process in (("own process", False), ("in process", True))
    }
    outcome = Outcome(raw={"load": loads, "handler_requests_per_s": handler, "syncs": syncs})
    sync_rate = median([run["calls"] / run["seconds"] for run in syncs["own process"]])
    own = loads["own process"]
    outcome.add(
        Row(
            "EMU",
            "ceiling, emulator in its own process",
            f"{own['requests_per_s']:,.0f} req/s",
            f"{own['requests_per_s'] / sync_rate:.2f}x sync's rate",
            "> a sync's rate",
            verdict(own["requests_per_s"] > sync_rate),
            f"{LOAD_PROCESSES} processes x {LOAD_THREADS} boto3 clients, which saturate the "
            f"machine first: emulator CPU {own['emulator_cpu_share']:.0%} of a core, i.e. "
            f"~{own['requests_per_s'] / own['emulator_cpu_share']:,.0f} req/s per core; "
            f"the sync's peak: {sync_rate:,.0f} req/s",
        ),
        Row(
            "EMU",
            "ceiling, emulator in this process",
            f"{loads['in process']['requests_per_s']:,.0f} req/s",
            "-",
            "-",
            INFO,
            f"request handler alone (no HTTP): {handler:,.0f} req/s",
        ),
    )
    times = {label: median([run["seconds"] for run in runs]) for label, runs in syncs.items()}
    outcome.add(
        Row(
            "EMU",
            "full sync, emulator in the sync's process",
            seconds_text(times["in process"]),
            f"{times['in process'] / times['own process']:.2f}x own process",
            "-",
            INFO,
            f"own process {seconds_text(times['own process'])}: the suite runs it there",
        )
    )
    return outcome
