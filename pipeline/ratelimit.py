"""The request rate of one target: it finds the account's limit, tells it from noise, and
keeps what it found for the next sync.

An account's SageMaker limit is a token bucket shared with every other client of the account
(Studio, CI jobs, other tools), and the service also throttles some requests whatever the
rate. So each target paces its requests (evenly spaced, `reserve`) at a rate it learns from
the answers (`observe`):

- **Slow start.** With nothing known, the rate starts at `INITIAL_RPS` and doubles every
  `DOUBLING_S` while workers wait on it: an endpoint that never throttles is soon limited only
  by the workers.
- **The first throttle: a limit or noise?** A bucket that runs dry throttles most requests
  sent after it, noise only a few. So the first throttle cuts the rate at once to what the
  bucket can have given (`accepted / (span + 1 s)`: the requests accepted so far, over the time
  they took plus the one second of burst the bucket may have held), and the answers to the
  requests already in flight at the old rate judge it: when at most a third of them are
  throttled, it was noise, and the old rate comes back after one round trip.
- **The limit found.** While the bucket is dry, the requests accepted arrive at exactly the
  rate left to us (the limit less what other clients take). Throttles that go on after a cut
  measure it (`accepted since the first throttle / that time`), and the rate is set just
  under it (`CRUISE`). That rate is the limit found: `learned_rps`, kept for the next sync.
- **Noise.** Throttles that keep coming while the rate is under the limit found, at a share
  that does not fall when the rate falls, are noise: the share is tolerated from then on
  (`noise`), and the rate is not cut for it.
- **Probing.** Under the limit found, after `QUIET_S` without a throttle, the rate creeps
  up by `PROBE_PER_S` of the limit a second, so a limit that was raised is found; a throttle
  above the limit found sends it back under.

`max_rps` (`--max-rps`) caps the rate on top. Throttled requests are retried through the
pacer, not after botocore's random back-off: the pacer is the back-off.

The arithmetic (`reserve`, `observe`) takes the time as an argument, so it is tested against a
simulated account without sleeping (tests/rate_sim.py); `acquire` is the same on the real
clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .guard import Cancelled

__all__ = ["AdaptiveRateLimiter"]

INITIAL_RPS = 100.0
DOUBLING_S = 0.06
BACKOFF = 0.8
"""A throttle above noise cuts the rate this far while the answers after the cut tell a limit
from noise."""
CRUISE = 0.95
"""The share of the limit found that the rate holds: the bucket refills a little between
requests, so a neighbour's burst is not throttled at once."""
QUIET_S = 2.0
"""Without a throttle this long, the rate probes above the limit found."""
PROBE_PER_S = 0.1
MAX_QUIET_S = 60.0
PROBE_CALLS = 100
"""A probe that fails waits twice as long before the next, and at least this many calls, so
probing a limit that holds costs at most one throttled request in this many."""
MIN_RPS = 0.5
BURST_S = 0.05
BUCKET_S = 1.0
"""The burst a service's bucket may hold, in seconds of its rate: what the rate of accepted
requests over a span must be discounted by before it proves a limit."""
EVIDENCE_S = 10.0
CLIMB_DOUBLING_S = 0.5
JUDGE_SHARE = 1 / 3
"""Of the requests in flight when the first throttle came back: more than this share
throttled, and the bucket ran dry; fewer, and the throttle was noise."""
JUDGE_ANSWERS = 8
SHARE_WINDOW = 100
"""Answers over which the throttled share is taken."""
MIN_MEASURE = 3
"""Accepted answers since a limit's first throttle needed to measure the rate it leaves."""
NOISE_SAMPLE = 40
"""Answers after a cut needed to tell whether the throttled share fell with the rate."""
NOISE_MAX = 0.3
DRY_REFUSED = 5
NOISE_CAP = 0.2
"""The most throttling ever taken for noise: more is a limit, whatever the answers said."""
MIN_NOISE = 0.05
"""A throttled share this high after a cut is a dry bucket, never noise."""


class AdaptiveRateLimiter:
    """A thread-safe request pacer for one target (see the module docstring)."""

    def __init__(self, max_rps: float | None = None, *, learned: float | None = None) -> None:
        if max_rps is not None and max_rps <= 0:
            raise ValueError("max_rps must be positive")
        self.max_rps = max_rps
        self.limit = learned
        """The rate the account leaves us, as found (or as learned by an earlier sync)."""
        self.noise = 0.0
        """The throttled share taken as noise, not as a limit."""
        self._rate = CRUISE * learned if learned else INITIAL_RPS
        self._slow_start = learned is None
        self._climbing = False
        """After the first throttle: its estimate is a floor, and the rate climbs from it
        until it meets the limit."""
        self._next_at = 0.0  # when the next request may go (GCRA's theoretical arrival time)
        self._grown_at: float | None = None
        self._first_sent: float | None = None
        self._accepted = 0
        self._accepted_at: deque[float] = deque()
        self._answers: deque[bool] = deque(maxlen=SHARE_WINDOW)
        self._cut_at = float("-inf")
        self._calm_since = 0.0
        self._quiet_s = QUIET_S
        self._episode: float | None = None
        """When the first throttled request of the current dry spell was sent."""
        self._episode_accepted = 0
        self._judging: tuple[float, float, int, int] | None = None
        """(rate before the cut, when the cut was made, in-flight throttled, in-flight
        answered) while the first throttle is judged."""
        self._undo: tuple[float, float | None, float] | None = None
        """(rate, limit, share) before the last cut for a dry bucket, until the answers after
        it tell a limit from noise."""
        self._after_cut = [0, 0]
        self._last_sent = 0.0
        self._lock = threading.Lock()

    @property
    def learned_rps(self) -> float | None:
        """The limit found (or carried over), for the next sync; None when none is known."""
        return self.limit

    @property
    def rate(self) -> float | None:
        """The requests per second allowed now; None when nothing limits them."""
        return min(self._rate, self.max_rps) if self.max_rps is not None else self._rate

    def reserve(self, now: float) -> float:
        """Take a request slot now (0.0), or say how long to wait before asking again.

        Nothing is booked ahead: a waiting worker asks again, so a rate that rose meanwhile
        serves it at once."""
        with self._lock:
            if self._first_sent is None:
                self._first_sent = self._calm_since = now
            rate = self.rate or self._rate
            wait = self._next_at - BURST_S - now
            # Saturated: a worker waits, or takes a slot that freed less than one interval ago.
            self._grow(now, saturated=wait > -1.0 / rate)
            rate = self.rate or rate
            if wait > 0:
                return min(wait, 1.0 / rate)
            self._next_at = max(self._next_at, now) + 1.0 / rate
            return 0.0

    def _grow(self, now: float, saturated: bool) -> None:
        """Raise the rate for the time workers have been waiting on it."""
        if not saturated or self._judging is not None:
            self._grown_at = None
            return
        if self._grown_at is not None:
            elapsed = now - self._grown_at
            if self._slow_start:
                self._rate *= 2.0 ** (elapsed / DOUBLING_S)
            elif self._climbing and now - self._calm_since >= CLIMB_DOUBLING_S:
                self._rate *= 2.0 ** (elapsed / CLIMB_DOUBLING_S)
            elif self.limit is not None and self._rate < CRUISE * self.limit:
                self._rate = min(CRUISE * self.limit, self._rate * 2.0 ** (elapsed / DOUBLING_S))
            elif now - self._calm_since >= self._quiet_s and self.limit is not None:
                self._rate += PROBE_PER_S * self.limit * elapsed
            if self.max_rps is not None:
                self._rate = min(self._rate, self.max_rps * 2)
        self._grown_at = now

    def observe(self, sent_at: float, throttled: bool, now: float) -> None:
        """Learn from one answer to a request sent at `sent_at`."""
        with self._lock:
            self._answers.append(throttled)
            if sent_at >= self._cut_at:
                self._last_sent = max(self._last_sent, sent_at)
                self._after_cut[0] += 1
                self._after_cut[1] += throttled
            if not throttled:
                self._count_accepted(sent_at, now)
            if self._judging is not None:
                self._judge(sent_at, throttled, now)
            elif throttled and sent_at >= self._cut_at:
                self._throttle(sent_at, now)
            self._check_noise(now)

    def _count_accepted(self, sent_at: float, now: float) -> None:
        """Count an accepted answer; raise the limit when the answers prove it higher."""
        self._accepted += 1
        if self._episode is not None and sent_at >= self._episode:
            self._episode_accepted += 1
        self._accepted_at.append(now)
        while self._accepted_at[0] < now - EVIDENCE_S:
            self._accepted_at.popleft()
        if self.limit is not None and self._first_sent is not None:
            if now - self._first_sent >= EVIDENCE_S:
                proven = len(self._accepted_at) / (EVIDENCE_S + BUCKET_S)
                self.limit = max(self.limit, proven)

    def _throttle(self, sent_at: float, now: float) -> None:
        self._calm_since = now
        if self._share() <= self.noise or self._undo is not None:
            return  # noise, or a cut being judged by the answers after it
        if self._slow_start:
            self._first_throttle(sent_at, now)
            return
        if self._climbing:
            # The first estimate was a floor: the rate that met the limit is the limit.
            self._climbing = False
            recent = sum(1 for at in self._accepted_at if at >= now - CLIMB_DOUBLING_S)
            self.limit = max(self.limit or MIN_RPS, min(self._rate, recent / CLIMB_DOUBLING_S))
            self._cut(CRUISE * self.limit, now)
            return
        if self.limit is not None and self._rate > self.limit:
            # A probe past the limit found: back under, and probe less often.
            self._quiet_s = min(MAX_QUIET_S, max(2 * self._quiet_s, PROBE_CALLS / self.limit))
            self._cut(CRUISE * self.limit, now)
            return
        self._dry(sent_at, now)

    def _share(self) -> float:
        return sum(self._answers) / len(self._answers)

    def _first_throttle(self, sent_at: float, now: float) -> None:
        """Cut to what the bucket can have given, and judge the cut by the answers to come."""
        assert self._first_sent is not None
        span = max(0.0, sent_at - self._first_sent)
        estimate = max(MIN_RPS, self._accepted / (span + BUCKET_S))
        self._judging = (self._rate, now, 1, 1)
        self._slow_start = False
        self.limit = estimate
        self._climbing = True
        self._cut(CRUISE * estimate, now)

    def _judge(self, sent_at: float, throttled: bool, now: float) -> None:
        """One more answer to a request sent before the first cut: a limit, or noise?"""
        assert self._judging is not None
        before, cut_at, refused, answered = self._judging
        if sent_at < cut_at:
            refused, answered = refused + throttled, answered + 1
            self._judging = (before, cut_at, refused, answered)
            if answered < JUDGE_ANSWERS:
                return
        self._judging = None
        if answered >= 2 and refused / answered <= JUDGE_SHARE:
            self._rate = max(self._rate, before)  # noise: back to the old rate
            self.limit, self._slow_start, self._climbing = None, True, False
            self._tolerate(self._share())

    def _dry(self, sent_at: float, now: float) -> None:
        """A throttle above noise: cut a little, and let the answers to come tell a limit
        (the throttles stop, or go on at the rate the dry bucket leaves) from noise (they go
        on at the same share)."""
        self._undo = (self._rate, self.limit, self._share())
        self._cut(self._rate * BACKOFF, now)

    def _check_noise(self, now: float) -> None:
        """Judge the last cut by the answers to the requests sent after it."""
        if self._undo is None:
            return
        answered, refused = self._after_cut
        dry = refused >= DRY_REFUSED and refused / answered >= NOISE_MAX
        if answered < NOISE_SAMPLE and not dry:
            return
        rate, limit, share = self._undo
        self._undo = None
        after = refused / max(1, answered)
        # A limit would leave what was accepted before the cut, so the share after it would
        # fall to `expected`; noise would keep the share it had. Which is nearer?
        expected = max(0.0, 1 - rate * (1 - share) / self._rate)
        if not dry and refused and abs(after - share) < abs(after - expected):
            # The share did not fall with the rate: noise. Undo the cut and tolerate it; the
            # rate it was at did not meet a limit.
            self._rate = max(self._rate, rate)
            self.limit = None if limit is None else max(limit, rate)
            self._tolerate(max(after, share))
        elif refused:
            # Still dry: the accepted requests came at the rate the bucket leaves.
            self.limit = max(MIN_RPS, self._rate * (1 - after))
            self._cut(CRUISE * self.limit, now)
        elif limit is None or self._rate / CRUISE < limit:
            self.limit = self._rate / CRUISE  # the throttles stopped just under here

    def _tolerate(self, share: float) -> None:
        self.noise = min(NOISE_CAP, max(self.noise, 2 * share, MIN_NOISE))

    def _cut(self, rate: float, now: float) -> None:
        self._rate = max(MIN_RPS, min(self._rate, rate))
        self._cut_at = now
        self._after_cut = [0, 0]
        self._grown_at = None

    def acquire(self, cancel: threading.Event) -> float:
        """Wait for a slot on the real clock (Cancelled once `cancel` is set); the send time."""
        while (delay := self.reserve(time.monotonic())) > 0:
            if cancel.wait(delay):
                raise Cancelled()
        return time.monotonic()
