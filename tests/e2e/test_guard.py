"""The bounds on calls, through a sync against the emulator: what the hostile fault-matrix rows
show end to end, checked here at the unit that promises it."""

from __future__ import annotations

import threading
import time

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.extract import sync
from pipeline.run import SyncOptions
from pipeline.storage import DataDir
from tests.support import OTHER_REGION, REGION, run_sync

SENDERS = "image-versions-http"


def live_senders() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == SENDERS}


def test_sender_threads_end_with_their_target(server: EmulatorServer, data_dir: DataDir) -> None:
    before = live_senders()
    for region in (REGION, OTHER_REGION):
        seed_catalogue(server.emulator, seed=3, images=12, region=region)
        report = run_sync(data_dir, server, region=region, concurrency=8)
        assert report.ok
    for thread in live_senders() - before:
        thread.join(timeout=300)  # they end on their own once their target is done
    assert live_senders() <= before


def test_waiting_for_the_rate_limit_does_not_spend_the_call_deadline(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """12 calls at 4 requests/s take 3 s; each call's network time stays far below 1 s."""
    seed_catalogue(server.emulator, seed=4, images=11)
    source = SourceConfig("default", (REGION,), endpoint_url=server.url)
    access = AccessSettings(max_rps=4, call_deadline_s=1.0, concurrency=8)
    targets = build_targets(ProjectConfig(sources=(source,)), access)
    started = time.monotonic()
    report = sync(data_dir, targets, SyncOptions(concurrency=8))
    assert time.monotonic() - started > 2  # the limit really held the calls back
    assert report.ok, [str(failure) for failure in report.failures]
