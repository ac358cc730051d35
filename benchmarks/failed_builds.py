"""A1: the cost of the failed-builds query (`status --failed-since`, the check
`failed_builds_since_last_run`) over a large history.

A catalogue of `alert_images` x 100 versions (8% failed builds) is synced once, then changed
and synced again a few times (status moves, CREATED <-> DELETE_FAILED among them). The query
is timed over the whole history (`since` the epoch: every failed build ever) and as the check
runs it after a sync (`since` the sync before: a window of one sync), each as a new in-memory
connection with the views, as the CLI and the check open it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pipeline.failed_builds import FailedBuilds, failed_builds
from pipeline.storage import DataDir
from pipeline.warehouse import views_summary

from .catalogue import CatalogueSpec
from .emulator_proc import open_emulator
from .harness import Context, Outcome, Row, median, product_sync, verdict

VERSIONS_PER_IMAGE = 100
CHANGED_SYNCS = 5
CHANGES_PER_SYNC = 200
QUERY_RUNS = 5
CHECK_LIMIT_S = 2.0
"""The check runs after every sync: it must stay a small part of one."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _history(ctx: Context, data_dir: DataDir) -> datetime:
    """Sync the catalogue, then CHANGED_SYNCS changes of it; the end of the last sync but one."""
    previous = EPOCH
    with open_emulator() as emulator:
        emulator.fill(CatalogueSpec(ctx.sizes.alert_images, VERSIONS_PER_IMAGE))
        product_sync(emulator.url, data_dir.root)
        for index in range(CHANGED_SYNCS):
            previous = failed_builds(data_dir, previous).through or previous
            emulator.change(CHANGES_PER_SYNC, seed=index, advance_s=3600.0)
            product_sync(emulator.url, data_dir.root)
    return previous


def _timed(data_dir: DataDir, since: datetime) -> tuple[list[float], FailedBuilds]:
    times, builds = [], None
    for _ in range(QUERY_RUNS):
        started = time.perf_counter()
        builds = failed_builds(data_dir, since)
        times.append(time.perf_counter() - started)
    assert builds is not None
    return times, builds


def a1(ctx: Context) -> Outcome:
    data_dir = DataDir(ctx.fresh_dir("a1"))
    last_window = _history(ctx, data_dir)
    history = views_summary(data_dir, ["image_version_history"])["image_version_history"]
    whole, everything = _timed(data_dir, EPOCH)
    window, latest = _timed(data_dir, last_window)
    outcome = Outcome(raw={"history_rows": history, "whole": whole, "one_sync": window})
    for label, times, builds in (
        ("whole history", whole, everything),
        ("one sync (the check)", window, latest),
    ):
        outcome.add(
            Row(
                "A1",
                f"failed builds / {label}",
                f"{median(times) * 1000:.0f} ms",
                "",
                f"<= {CHECK_LIMIT_S:g} s",
                verdict(median(times) <= CHECK_LIMIT_S),
                f"{len(builds.rows)} versions named; {history:,} history rows; "
                f"median of {QUERY_RUNS}",
            )
        )
    return outcome
