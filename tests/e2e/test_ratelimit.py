"""The rate limiter through boto3 against a rate-limited emulator: what a sync learns of an
account's limit, and keeps for every source reaching that account (per account, not per source).
The limiter's cases in virtual time are in tests/unit/test_ratelimit.py."""

from __future__ import annotations

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.extract import sync
from pipeline.run import SyncOptions
from pipeline.state import load_learned_rate
from pipeline.storage import DataDir
from tests.support import REGION, assert_converged, run_sync


def test_a_sync_against_a_rate_limited_emulator_keeps_the_limit_for_every_source(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=21, images=80)
    server.emulator.faults.rate_limit_rps = 20
    server.emulator.faults.latency_s = 0.02  # requests in flight, as against AWS
    report = run_sync(data_dir, server)
    assert report.ok
    # The limit was met and kept: the first sync probed into it, and most of its attempts got
    # through. How few were throttled is the simulator's to measure, in virtual time: here a
    # busy machine bunches the emulator's answers, and its token bucket sees bursts we never sent.
    stats = report.stats
    assert 0 < stats.throttled <= 0.25 * stats.attempts, (stats.throttled, stats.attempts)
    assert_converged(data_dir, server.emulator)
    (account,) = data_dir.account_keys()
    learned = load_learned_rate(data_dir, account)
    # Never above the limit; below it only as far as a starved interpreter misreads the answers.
    assert learned is not None and 5 <= learned.rps <= 22, learned
    # The next sync starts from it: no probe, no burst.
    again = run_sync(data_dir, server)
    assert again.ok and again.stats.throttled <= 2, again.stats.throttled


def test_another_source_reaching_the_account_starts_from_its_limit(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """The limit is the account's, not the source's: a second source (another name, another
    process in a real deployment) that reaches the same account starts from what the first
    found, read once it holds the account's lock."""
    seed_catalogue(server.emulator, seed=22, images=40)
    server.emulator.faults.rate_limit_rps = 20
    server.emulator.faults.latency_s = 0.02
    first = run_sync(data_dir, server)
    assert first.ok and first.stats.throttled > 0  # the first source probed
    (account,) = data_dir.account_keys()
    found = load_learned_rate(data_dir, account)
    assert found is not None
    server.emulator.faults.refill()
    other = SourceConfig("other", (REGION,), endpoint_url=server.url)
    targets = build_targets(ProjectConfig(sources=(other,)), AccessSettings())
    second = sync(data_dir, targets, SyncOptions(full_refresh=True))
    assert second.ok
    assert second.stats.throttled <= 2, second.stats.throttled
    assert load_learned_rate(data_dir, account) is not None
