"""The adaptive rate limiter converges: against a simulated rate-limited service (a token bucket
like the emulator's, on a simulated clock), and against a real emulator through boto3."""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.guard import Cancelled
from pipeline.ratelimit import AdaptiveRateLimiter
from pipeline.state import load_rate_hint, save_rate_hint, target_key
from pipeline.storage import DataDir

from .support import REGION, assert_converged, run_sync


@dataclass
class Outcome:
    seconds: float
    attempts: int
    throttled: int
    rates: list[tuple[float, float]]
    """(time, the limiter's rate) after each answer."""


def simulate(
    calls: int,
    *,
    workers: int,
    latency_s: float,
    limit_rps: float | None,
    max_rps: float | None,
    burst: int = 0,
) -> Outcome:
    """`calls` requests by `workers` workers through one limiter to a service that accepts
    `limit_rps` a second (a bucket of one second of requests), after throttling its first
    `burst` requests whatever the rate, and answers after `latency_s`; a throttled request
    is retried after a back-off of up to a second, as botocore does."""
    rng = random.Random(7)
    limiter = AdaptiveRateLimiter(max_rps)
    tokens, refilled = limit_rps or 0.0, 0.0
    queue: list[tuple[float, int, str, float]] = [(0.0, w, "next", 0.0) for w in range(workers)]
    remaining, attempts, throttled, finished = calls, 0, 0, 0.0
    rates: list[tuple[float, float]] = []
    while queue:
        now, worker, kind, sent_at = heapq.heappop(queue)
        if kind == "next":
            if remaining == 0:
                continue
            remaining -= 1
            kind = "try"
        if kind == "try":
            wait = limiter.reserve(now)
            if wait > 0:
                heapq.heappush(queue, (now + wait, worker, "try", 0.0))
                continue
            attempts += 1
            accepted = True
            if burst > 0:
                burst, accepted = burst - 1, False
            elif limit_rps is not None:
                tokens = min(limit_rps, tokens + (now - refilled) * limit_rps)
                refilled = now
                accepted = tokens >= 1
                tokens -= accepted
            heapq.heappush(queue, (now + latency_s, worker, "ok" if accepted else "429", now))
        elif kind in ("ok", "429"):
            limiter.observe(sent_at, kind == "429", now)
            rates.append((now, limiter.rate or float("inf")))
            if kind == "ok":
                finished = max(finished, now)
                heapq.heappush(queue, (now, worker, "next", 0.0))
            else:
                throttled += 1
                heapq.heappush(queue, (now + rng.random(), worker, "try", 0.0))
    return Outcome(finished, attempts, throttled, rates)


@pytest.mark.parametrize("calls", [300, 1000, 3000])
def test_it_converges_on_a_20_rps_limit(calls: int) -> None:
    outcome = simulate(calls, workers=16, latency_s=0.02, limit_rps=20, max_rps=None)
    floor = (calls - 20) / 20  # the service's bucket starts full: one second of requests
    assert outcome.seconds <= 1.1 * floor
    assert outcome.throttled <= max(10, 0.02 * outcome.attempts)
    # After the first second the rate stays near the limit: it neither collapses nor runs away.
    settled = [rate for at, rate in outcome.rates if at > 2.0]
    assert min(settled) >= 14 and max(settled) <= 26


@pytest.mark.parametrize("limit", [5.0, 80.0])
def test_it_finds_other_limits_too(limit: float) -> None:
    calls = int(limit * 40)
    outcome = simulate(calls, workers=16, latency_s=0.02, limit_rps=limit, max_rps=None)
    assert outcome.seconds <= 1.15 * (calls - limit) / limit
    assert outcome.throttled <= max(10, 0.03 * outcome.attempts)


def test_an_unthrottled_endpoint_is_limited_only_by_the_workers() -> None:
    calls, workers, latency = 3000, 16, 0.03
    outcome = simulate(calls, workers=workers, latency_s=latency, limit_rps=None, max_rps=None)
    assert outcome.throttled == 0
    assert outcome.seconds <= 1.1 * calls * latency / workers


def test_a_burst_of_throttles_costs_seconds_not_the_rest_of_the_sync() -> None:
    """50 throttles in a row that have nothing to do with the rate (another client hogging the
    account): the rate backs off, then recovers once they stop."""
    outcome = simulate(400, workers=8, latency_s=0.01, limit_rps=None, max_rps=None, burst=50)
    assert outcome.throttled == 50
    assert outcome.seconds <= 20
    assert outcome.rates[-1][1] >= 20


def test_max_rps_caps_the_rate() -> None:
    outcome = simulate(400, workers=16, latency_s=0.01, limit_rps=None, max_rps=10)
    assert outcome.seconds >= 400 / 10 - 1
    assert max(rate for _, rate in outcome.rates) <= 10


def test_a_waiting_worker_is_cancelled() -> None:
    limiter = AdaptiveRateLimiter(max_rps=1)
    cancel = threading.Event()
    limiter.acquire(cancel)
    cancel.set()
    with pytest.raises(Cancelled):
        limiter.acquire(cancel)


def test_a_sync_against_a_rate_limited_emulator_stays_correct_and_rarely_throttled(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=21, images=40)
    server.emulator.faults.rate_limit_rps = 20
    report = run_sync(data_dir, server)
    assert report.ok
    # The probe at the start costs a few throttled attempts, once; then the rate holds.
    assert report.stats.throttled <= 15, report.stats.throttled
    assert_converged(data_dir, server.emulator)
    key = target_key("default", REGION)
    learned = load_rate_hint(data_dir, key)
    assert learned is not None and 10 <= learned <= 30, learned
    # The next (scheduled) sync starts from what this one learned: no probe, no burst.
    again = run_sync(data_dir, server)
    assert again.ok and again.stats.throttled <= 2, again.stats.throttled


def test_a_rate_hint_that_is_old_or_unreadable_is_ignored(data_dir: DataDir) -> None:
    key = target_key("default", REGION)
    data_dir.prepare()
    hint = Path(data_dir.target_dir(key)) / "rate.json"
    hint.parent.mkdir(parents=True)
    for body in ("not json", '{"rps": "fast"}', '{"rps": -3, "saved_at": 1e18}', "[]"):
        hint.write_text(body)
        assert load_rate_hint(data_dir, key) is None
    hint.write_text(json.dumps({"rps": 20.0, "saved_at": time.time() - 2 * 24 * 3600}))
    assert load_rate_hint(data_dir, key) is None
    save_rate_hint(data_dir, key, 20.0)
    assert load_rate_hint(data_dir, key) == 20.0
    save_rate_hint(data_dir, key, None)
    assert not hint.exists()
