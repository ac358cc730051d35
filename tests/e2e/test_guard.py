"""The bounds on calls, through a sync against the emulator: what the hostile fault-matrix rows
show end to end, checked here at the unit that promises it."""

from __future__ import annotations

import threading
import time

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.defaults import READ_TIMEOUT_S
from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.extract import sync
from pipeline.guard import WATCHDOG
from pipeline.run import SyncOptions
from pipeline.storage import DataDir
from tests.hostile import HostileProxy, Misbehaviour, aimed_at
from tests.support import OTHER_REGION, REGION, run_sync


def guard_threads() -> set[threading.Thread]:
    """Threads that are neither the sync's targets nor its workers: the watchdog's."""
    return {thread for thread in threading.enumerate() if thread.name == WATCHDOG}


def test_no_thread_per_call_and_the_watchdog_ends_when_idle(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """Every attempt runs on its worker: beside the workers, one watchdog, ended once idle."""
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        if "process_request_thread" not in thread.name:  # the emulator's, one a connection
            started.append(thread.name)
        real_start(thread)

    for region in (REGION, OTHER_REGION):
        seed_catalogue(server.emulator, seed=3, images=12, region=region)
    threading.Thread.start = counting_start  # type: ignore[method-assign]
    try:
        for region in (REGION, OTHER_REGION):
            assert run_sync(data_dir, server, region=region, concurrency=8).ok
    finally:
        threading.Thread.start = real_start  # type: ignore[method-assign]
    calls = 2 * (12 + 1)
    assert len(started) < calls  # targets, workers and at most a watchdog per sync: no sender
    assert started.count(WATCHDOG) <= 2
    for thread in guard_threads():
        thread.join(timeout=30)  # it ends by itself once no call is in flight
    assert not guard_threads()


def test_a_silent_answer_ends_at_the_call_deadline(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """An answer that never comes fails its image at the deadline, not botocore's read
    timeout (30 s, times its attempts): the watchdog shuts the worker's socket down."""
    seed_catalogue(server.emulator, seed=5, images=3)
    victim = sorted(server.emulator.image_names(REGION))[0]
    plan = aimed_at("ListImageVersions", Misbehaviour("silent"), victim)
    with HostileProxy(server.url, plan) as proxy:
        source = SourceConfig("default", (REGION,), endpoint_url=proxy.url)
        access = AccessSettings(call_deadline_s=1.0)
        targets = build_targets(ProjectConfig(sources=(source,)), access)
        began = time.monotonic()
        report = sync(data_dir, targets, SyncOptions())
        seconds = time.monotonic() - began
    assert [failure.image_name for failure in report.failures] == [victim]
    assert "deadline" in str(report.failures[0])
    assert seconds < READ_TIMEOUT_S


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
