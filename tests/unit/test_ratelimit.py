"""The rate limiter against every case of issue 18, in virtual time (tests/rate_sim.py): a
hard limit with a bucket of a second or of one request, random throttles, a steady neighbour,
eight accounts side by side, limits that move between syncs; and the learned rate a sync keeps
for the next. tests/e2e/test_ratelimit.py runs the limiter through boto3 against the emulator."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from pipeline.guard import Cancelled
from pipeline.ratelimit import (
    CRUISE,
    SPEND_SHARE,
    STORM_RPS,
    AdaptiveRateLimiter,
    Learned,
    SharedStart,
)
from pipeline.state import load_learned_rate, save_learned_rate
from pipeline.storage import DataDir
from tests import rate_sim as sim
from tests.support import REGION

CALLS = 300
SYNC_COSTS_S = 0.7
"""What a whole sync spends besides its calls (pandas' first import, the state, the views), as
the RATE benchmark measures it: the issue's 1.15x is of the sync's wall, so the calls get the
rest of it."""


def syncs(account: sim.Account, count: int, calls: int = CALLS) -> list[sim.Target]:
    """`count` syncs of one target in a row, each starting from what the last one learned
    (a fresh account each time: its bucket full, its neighbour and noise as given)."""
    done: list[sim.Target] = []
    learned = None
    for _ in range(count):
        fresh = dataclasses.replace(account)  # a copy: its bucket full, its rng from the seed
        target = sim.run([sim.Target(AdaptiveRateLimiter(learned=learned), fresh, calls)])[0]
        learned = target.limiter.learned
        done.append(target)
    return done


def wall_over_floor(target: sim.Target, limit: float, costs_s: float = 0.0) -> float:
    return (target.finished + costs_s) / (target.calls / limit)


@pytest.mark.parametrize("capacity", ["second", "one"])
@pytest.mark.parametrize("limit", [1, 2, 5, 10, 20, 50, 100])
def test_after_its_first_sync_a_target_is_rarely_throttled(limit: int, capacity: str) -> None:
    """About 10 s of calls at the limit (as in the RATE benchmark), and the sync's own costs."""
    bucket = None if capacity == "second" else 1.0
    _, *later = syncs(sim.Account(limit, bucket), 3, max(CALLS, 10 * limit))
    for target in later:
        assert target.throttled <= 0.02 * target.attempts, target.throttled
    if capacity == "second":
        assert all(wall_over_floor(target, limit, SYNC_COSTS_S) <= 1.15 for target in later)
    elif limit <= 20:
        assert all(wall_over_floor(target, limit) <= 1.15 for target in later)
    else:
        # A bucket of one request hides nothing of the limit, and proves little of it: the
        # first sync's estimate is a floor that later syncs raise only as probes allow.
        assert all(wall_over_floor(target, limit) <= 1.7 for target in later)


@pytest.mark.parametrize("jitter_s", [0.005, 0.01, 0.02])
@pytest.mark.parametrize("limit", [5, 10, 20])
def test_a_bucket_of_one_request_is_held_to_what_the_arrivals_jitter_allows(
    limit: int, jitter_s: float
) -> None:
    """Requests reaching a bucket of one request up to `jitter_s` late (a real client's threads
    and connection): two of them closer than 1 / limit are one throttled, and the lateness of
    one against the next exceeds 0.8 x jitter_s in 2% of pairs (uniform lateness). So at most
    2% throttled takes 1 / limit + 0.8 x jitter_s between requests: 1.16x calls / limit at
    20/s and 10 ms, whatever the pacing (docs/operations.md). Later syncs keep to that floor."""
    calls = 200
    _, *later = syncs(sim.Account(limit, 1.0, jitter_s=jitter_s), 3, calls)
    floor = calls * (1 / limit + 0.8 * jitter_s)
    for target in later:
        assert target.throttled <= 0.02 * target.attempts, target.throttled
        assert target.finished <= 1.15 * floor, target.finished / floor


@pytest.mark.parametrize("limit", [1, 2, 5, 10, 20, 50, 100])
def test_a_first_sync_finds_the_limit_for_a_few_throttled_requests(limit: int) -> None:
    first = syncs(sim.Account(limit), 1)[0]
    # The probe's cost is the requests in flight when the bucket runs dry: at most the rate
    # the slow start reached in one round trip. Up to 20 requests/s that is the issue's
    # max(2%, 6); at 50 and 100 the workers' 800 requests/s reach it first (see the note in
    # docs/operations.md).
    budget = max(0.02 * first.attempts, 6) if limit <= 20 else 16
    assert first.throttled <= budget, first.throttled
    assert wall_over_floor(first, limit) <= 1.15
    assert first.limiter.learned is not None
    assert 0.85 * limit <= first.limiter.learned.rps <= 1.1 * limit


class _FirstAnswer(AdaptiveRateLimiter):
    """Counts throttles of the requests sent after the first throttle's answer came."""

    first_answer_at: float | None = None
    after_it = 0

    def observe(self, sent_at: float, throttled: bool, now: float) -> None:
        if throttled and self.first_answer_at is None:
            self.first_answer_at = now
        elif throttled and self.first_answer_at is not None:
            self.after_it += sent_at >= self.first_answer_at
        super().observe(sent_at, throttled, now)


@pytest.mark.parametrize("latency_s", [0.02, 0.03, 0.045])
@pytest.mark.parametrize("limit", [2, 20, 100])
def test_what_a_first_sync_pays_beyond_the_requests_in_flight_is_one_throttle(
    limit: int, latency_s: float
) -> None:
    """The first sync's floor is the round trip's (docs/operations.md): requests in flight when
    the bucket runs dry are throttled whatever follows; after the first answer, only the climb
    that confirms the limit may meet it, once."""
    limiter = _FirstAnswer()
    account = sim.Account(limit)
    sim.run([sim.Target(limiter, account, max(60, 10 * limit))], latency_s=latency_s)
    assert limiter.first_answer_at is not None
    assert limiter.after_it <= 1, limiter.after_it


@pytest.mark.parametrize("noise", [0.02, 0.05, 0.10])
@pytest.mark.parametrize("calls", [300, 1000])
def test_random_throttles_cost_little_time(noise: float, calls: int) -> None:
    unthrottled = syncs(sim.Account(), 1, calls)[0]
    throttled = syncs(sim.Account(noise=noise), 1, calls)[0]
    assert throttled.throttled > 0
    assert throttled.finished <= 1.5 * unthrottled.finished
    assert throttled.limiter.learned is None  # noise is not a limit to keep


@pytest.mark.parametrize("neighbour", [8, 15])
def test_a_steady_neighbour_keeps_its_share_once_the_limit_is_learned(neighbour: int) -> None:
    limit = 20
    first, *later = syncs(sim.Account(limit, neighbour_rps=neighbour), 3)
    for target in later:
        assert target.throttled <= 0.03 * target.attempts
        assert target.neighbour_share <= 0.03
        assert target.finished <= 1.3 * target.calls / (limit - neighbour)
    assert first.limiter.learned is not None
    assert first.limiter.learned.rps <= 1.2 * (limit - neighbour)


def test_eight_accounts_side_by_side_share_one_probe() -> None:
    learned: list[Learned | None] = [None] * 8
    for _ in range(3):
        start = SharedStart()
        targets = [
            sim.Target(
                AdaptiveRateLimiter(learned=learned[i], shared=start), sim.Account(20), 130, 8
            )
            for i in range(8)
        ]
        sim.run(targets, cpu_s=0.0015)
        attempts = sum(target.attempts for target in targets)
        assert sum(target.throttled for target in targets) <= 0.02 * attempts
        assert max(target.finished for target in targets) <= 1.2 * 130 / 20
        learned = [target.limiter.learned for target in targets]


def test_the_learned_limit_does_not_creep_upward() -> None:
    for target in syncs(sim.Account(20), 10):
        assert target.limiter.learned is not None
        assert target.limiter.learned.rps <= 21


def test_a_full_bucket_is_no_evidence_of_a_higher_limit_even_when_the_burst_was_misread() -> None:
    """A first throttle read with bunched answers can take a bucket of a second for one of a
    request: probes past the limit then drain the full bucket, which must not read as a
    higher limit."""
    target = sim.run(
        [sim.Target(AdaptiveRateLimiter(learned=Learned(20.0, 1.0)), sim.Account(20), 1200)]
    )[0]
    assert target.limiter.learned is not None
    assert target.limiter.learned.rps <= 21, target.limiter.learned


@pytest.mark.parametrize("limit", [20, 100])
def test_a_later_sync_spends_half_the_burst_it_found_and_is_not_throttled_for_it(
    limit: int,
) -> None:
    """An idle account's bucket is full: a sync starting from the limit and burst found spends
    half the burst at its start, most of its worth in time (the spending goes at twice the
    rate, so the first requests of it are paced too), without a throttle."""
    calls = 10 * limit
    learned = syncs(sim.Account(limit), 1, calls)[0].limiter.learned
    assert learned is not None and learned.burst is not None
    unspent = Learned(learned.rps)  # no burst seen: nothing to spend
    spent, paced = (
        sim.run([sim.Target(AdaptiveRateLimiter(learned=start), sim.Account(limit), calls)])[0]
        for start in (learned, unspent)
    )
    worth = SPEND_SHARE * (learned.burst - 1) / (CRUISE * learned.rps)
    assert paced.finished - spent.finished >= 0.7 * worth
    assert spent.throttled == 0


@pytest.mark.parametrize("limit", [20, 50])
def test_a_burst_the_bucket_did_not_hold_costs_a_throttle_once_not_the_limit(limit: int) -> None:
    """A sync starting from a learned limit spends part of the burst seen: in a bucket of one
    request (its burst misread as 5), the throttles that end the spending are not the limit's,
    and the next syncs spend no more than the bucket gave."""
    learned = Learned(float(limit), 5.0)
    for index in range(4):
        account = sim.Account(limit, 1.0)
        target = sim.run([sim.Target(AdaptiveRateLimiter(learned=learned), account, CALLS)])[0]
        learned = target.limiter.learned
        assert learned is not None and learned.rps >= 0.95 * limit, learned
        assert target.throttled <= (2 if index == 0 else 1), target.throttled


def test_a_limit_raised_between_syncs_is_found_and_a_lowered_one_costs_a_few_throttles() -> None:
    raised = syncs(sim.Account(40), 1, 1200)[0]
    assert raised.limiter.learned is not None and raised.limiter.learned.rps >= 30
    start = Learned(20.0, 20.0)
    lowered = sim.Account(10)
    target = sim.run([sim.Target(AdaptiveRateLimiter(learned=start), lowered, CALLS)])[0]
    # 10 to measure the new limit, and two of the burst the start spends (half of 20) in a
    # bucket of 10: they end the spending, and say nothing of the limit.
    assert target.throttled <= 12
    assert target.limiter.learned is not None and target.limiter.learned.rps <= 11


@pytest.mark.parametrize("learned", [None, Learned(20.0, 20.0)])
def test_a_storm_of_throttles_costs_about_its_length_not_the_rest_of_the_sync(
    learned: Learned | None,
) -> None:
    """Every request throttled for 3 s (another client hogging the account), at the start or
    in the middle of a sync against a 20 requests/s limit: afterwards the rate comes back."""
    storm = (0.0, 3.0) if learned is None else (5.0, 8.0)
    account = sim.Account(20, storm=storm)
    target = sim.run([sim.Target(AdaptiveRateLimiter(learned=learned), account, 400)])[0]
    assert target.finished <= 400 / 20 + 3 + 6
    assert target.limiter.learned is not None and target.limiter.learned.rps >= 16


@pytest.mark.parametrize(("limit", "calls"), [(None, 2000), (20, 400), (2, 60)])
def test_a_storm_right_after_the_first_answer_is_not_taken_for_a_limit(
    limit: float | None, calls: int
) -> None:
    """One request accepted, then every one throttled for 5 s: the first estimate (about one
    request a second) rests on nothing, so the throttles that follow it, nothing accepted, are
    the storm's, and the climb from it goes on once the storm ends (it waited a minute for a
    probe when they ended the climb: 3-60x the time)."""
    storm = sim.Account(limit, storm=(0.001, 5.0))
    target = sim.run([sim.Target(AdaptiveRateLimiter(), storm, calls)])[0]
    calm = sim.run([sim.Target(AdaptiveRateLimiter(), sim.Account(limit), calls)])[0]
    assert target.finished <= calm.finished + 5.0 + 12.0
    assert target.throttled <= calm.throttled + 5.0 * STORM_RPS


def test_an_unthrottled_endpoint_is_limited_only_by_the_workers() -> None:
    target = syncs(sim.Account(), 1, 3000)[0]
    assert target.throttled == 0
    assert target.finished <= 1.1 * 3000 * sim.LATENCY_S / sim.WORKERS


def test_max_rps_caps_the_rate() -> None:
    limiter = AdaptiveRateLimiter(10)
    target = sim.run([sim.Target(limiter, sim.Account(), 400)])[0]
    assert target.finished >= 400 / 10 - 1
    assert max(rate for _, rate in target.rates) <= 10


def test_a_waiting_worker_is_cancelled() -> None:
    limiter = AdaptiveRateLimiter(max_rps=1)
    cancel = threading.Event()
    limiter.acquire(cancel)
    cancel.set()
    with pytest.raises(Cancelled):
        limiter.acquire(cancel)


def test_a_learned_rate_that_is_old_or_unreadable_is_ignored(data_dir: DataDir) -> None:
    account = f"123456789012.{REGION}"
    data_dir.prepare()
    hint = Path(data_dir.account_dir(account)) / "rate.json"
    hint.parent.mkdir(parents=True)
    for body in ("not json", '{"rps": "fast"}', '{"rps": -3, "saved_at": 1e18}', "[]"):
        hint.write_text(body)
        assert load_learned_rate(data_dir, account) is None
    hint.write_text(json.dumps({"rps": 20.0, "saved_at": time.time() - 8 * 24 * 3600}))
    assert load_learned_rate(data_dir, account) is None
    save_learned_rate(data_dir, account, Learned(20.0, 4.0))
    assert load_learned_rate(data_dir, account) == Learned(20.0, 4.0)
    save_learned_rate(data_dir, account, None)  # nothing found: what was found stands
    assert load_learned_rate(data_dir, account) == Learned(20.0, 4.0)
