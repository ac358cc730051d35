"""The request rate of one target: it finds the account's limit, tells it from noise and
from other clients' bursts, and keeps what it found for the next sync.

An account's SageMaker limit is a token bucket shared with every other client of the account:
it refills at a rate and holds a burst. The service also throttles some requests whatever the
rate. Each target paces its requests evenly (`reserve`) at a rate learned from the answers
(`observe`), with a model of that bucket (its rate, `limit`, and its `burst`):

- **Slow start**, doubling while workers wait, until the first throttle.
- **The first throttle** cuts the rate to what the bucket can have given; the answers to the
  requests in flight then judge it: a dry bucket throttles most of them, noise few. From a
  limit, the rate climbs again (`_confirming`) until it meets it.
- **Under the limit found**, throttles that go on are measured (a dry bucket accepts exactly
  what it refills), throttles that stop were a burst, throttles that keep their share however
  far the rate falls are noise, and a sample with nothing accepted is a storm.
- **A sync that starts from a learned limit** spends half the burst seen (`SPEND_SHARE`) at
  its start: an idle account's bucket is full, and calls / limit leaves it unspent.
- **Only evidence raises the limit**: requests accepted beyond what the limit and the burst
  allow, or a slow probe above it, every `PROBE_CALLS` requests at most.

docs/operations.md ("Throttling and the adaptive rate") gives the reasoning and the figures.
`SharedStart` lets the targets of one sync wait for one probe instead of each making its own.
`max_rps` (`--max-rps`) caps the rate on top.

The arithmetic takes the time as an argument, so it is tested against a simulated account
without sleeping (tests/rate_sim.py); `acquire` is the same on the real clock.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .guard import Cancelled

log = logging.getLogger(__name__)

__all__ = ["CRUISE", "SPEND_SHARE", "STORM_RPS", "AdaptiveRateLimiter", "Learned", "SharedStart"]

# Pacing.
CRUISE = 0.9
"""The share of the limit found that the rate holds: the bucket refills between requests, so
another client's burst finds tokens."""
BURST_SHARE = 0.05
"""How early a request may go, in intervals of the rate: enough for a late wake-up, not
enough for two requests to reach a bucket of one request too close together."""
MAX_NAP_S = 0.1
"""The longest a waiting worker sleeps before asking again: a cut that is undone at once
must not leave the workers asleep for an interval of the rate it cut to."""
JUDGING_NAP_S = 0.01
"""While the first throttle is judged (a round trip), waiting workers ask again this often:
the cut is undone as soon as the answers say noise."""
MIN_RPS = 0.5
SPEND_SHARE = 0.5
"""The share of a learned bucket's burst a sync spends at its start, at `SPEND_PACE` times
its rate: an idle account's bucket is full, and the other half is left for other clients."""
SPEND_PACE = 2.0

# Slow start, and the targets of one sync waiting for one probe.
INITIAL_RPS = 100.0
DOUBLING_S = 0.12
ROUND_TRIPS_PER_DOUBLING = 3
PATIENT_RPS = 10.0
PATIENCE_S = 3.0
PROOF_CALLS = 200
"""A slow start this many accepted requests long without a throttle proves there is no limit
for others to wait on (a second of the bucket's burst and then some, at 100 requests/s)."""

# The first throttle.
BUCKET_S = 1.0
"""The most burst a bucket is assumed to hold, in seconds of its rate, until one is seen."""
SENT_MEMORY_S = 1.0
"""How long the send times of requests are kept to count those in flight at a throttle."""
JUDGE_ANSWERS = 8
ASSUMED_NOISE = 0.1
"""The share of throttles the judge of the first throttle expects from noise."""
DRY_SHARE = 0.5
"""The share of requests in flight a dry bucket throttles, for the judge: that of a rate
twice the limit."""
FIRST_DRY_ODDS = 10.0
DRY_ODDS = 50.0
NOISE_ODDS = 0.25
"""How much likelier a dry bucket must be than noise for the first throttle to be a limit
(the first time; once noise was seen; at most, for it to be noise): the answers of a few
requests in flight prove little, and a noisy account gives many of them to judge."""
UNDECIDED_S = 1.0
NOISE_ANSWERS = 10
NOISE_DOUBT = 0.0005
"""Throttles among the last answers (at least `NOISE_ANSWERS`) less likely than this from
noise are a limit, whatever the few in flight said."""
MIN_EVIDENCE = 1
STORM_RPS = 5.0
"""Throttled before `MIN_EVIDENCE` requests were accepted (another client drained the bucket,
or the service sheds load), the rate falls no lower than this: nothing says what the limit
is yet."""
THIN_EVIDENCE = 8
"""A first estimate from fewer accepted requests proves no limit (one accepted request, then a
storm, reads as a limit of about one a second)."""
CONFIRM_DOUBLING_S = 1.0
DOUBLING_CALLS = 4
"""Near a limit, the rate doubles no faster than once in this many requests, so at a low
rate the answers tell it met the limit before it is far past it."""

# Under the limit found.
SHARE_WINDOW = 100
"""Answers over which the throttled share is held against the noise tolerated."""
MEASURE_WINDOW = 20
"""A throttle is looked into only with another among this many answers: one alone is a
burst of a neighbour's, or a late wake-up."""
MEASURE_ANSWERS = 5
"""Answers at one rate over which the share of it that the account accepts is measured."""
BACKOFF = 0.85
JUDGE_SAMPLE = 40
JUDGE_MAX_S = 2.0
DRY_SHOWS = (5, 0.3)
"""Throttled answers after a cut, and their share, that show the bucket is still dry."""
NOISE_CAP = 0.2
"""The most throttling ever taken for noise: more is a limit, whatever the answers said."""
MIN_NOISE = 0.03
NOISE_LEVER = 0.7

# Raising the limit found.
EVIDENCE_SPANS_S = (2.0, 5.0, 10.0)
EVIDENCE_EVERY_S = 0.5
QUIET_S = 5.0
MAX_QUIET_S = 600.0
PROBE_CALLS = 100
MAX_PROBE_GAP_S = 60.0
PROBE_PER_S = 0.05
PROBE_SUCCESS = 1.2
"""A probe that proves this much more than the limit found climbs as after a first throttle:
the limit was low (found during another client's burst, say), not met."""


@dataclass(frozen=True)
class Learned:
    """What a sync found of an account's limit, for the next sync to start from."""

    rps: float
    burst: float | None = None
    """Requests the bucket held beyond the limit, when a first throttle showed it."""


class SharedStart:
    """What the targets of one sync learn before their first throttle: one of them probes its
    account while the others go at `PATIENT_RPS` for at most `PATIENCE_S`; the limit it finds
    is where they start (accounts of one organisation mostly share their quotas), and a probe
    that finds none lets each probe its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prober: object | None = None
        self._claimed_at = 0.0
        self._found: Learned | None = None
        self._open = False

    def turn(self, limiter: object, now: float) -> Learned | bool:
        """The limit to start from; True to probe (or go) on one's own; False to wait."""
        with self._lock:
            if self._found is not None:
                return self._found
            if self._open or self._prober is limiter:
                return True
            if self._prober is None:
                self._prober, self._claimed_at = limiter, now
                return True
            return now - self._claimed_at > PATIENCE_S

    def found(self, limiter: object, learned: Learned | None) -> None:
        """The prober met a limit (or, None, proved there is none to meet)."""
        with self._lock:
            if limiter is self._prober and self._found is None and not self._open:
                self._found, self._open = learned, learned is None


@dataclass
class _Judged:
    """A cut being judged by the answers after it (or, the first one, by those in flight)."""

    at: float
    rate_before: float
    limit_before: float | None
    share_before: float | None
    first: bool = False
    in_flight: int = 0
    estimate: float = 0.0
    answered: int = 0
    throttled: int = 0
    sends: list[tuple[float, bool]] = field(default_factory=list)
    """(sent at, throttled) of the requests sent after the cut, as answered."""


class AdaptiveRateLimiter:
    """A thread-safe request pacer for one target (see the module docstring)."""

    def __init__(
        self,
        max_rps: float | None = None,
        *,
        learned: Learned | None = None,
        shared: SharedStart | None = None,
    ) -> None:
        if max_rps is not None and max_rps <= 0:
            raise ValueError("max_rps must be positive")
        self.max_rps = max_rps
        self.limit: float | None = None
        """The rate the account leaves us, as found (or as learned by an earlier sync)."""
        self.burst: float | None = None
        self.noise = 0.0
        """The share of throttled answers taken for noise, not for a limit."""
        self._rate = INITIAL_RPS
        self._confirming = False
        self._next_at = 0.0  # when the next request may go (GCRA's theoretical arrival time)
        self._credit = 0.0
        """Requests of the bucket's burst still to spend at the start (see `SPEND_SHARE`)."""
        self._spent = 0.0
        self._spending_until = float("-inf")
        """The requests spent of the burst so far, and when the last of them went."""
        self._grown_at: float | None = None
        self._started: float | None = None
        self._rtt = 0.0
        self._sent_at: deque[float] = deque()
        """When the requests of the last round trips went (the first throttle's judges)."""
        self._accepted = 0
        self._accepted_at: deque[float] = deque()
        self._recent: deque[bool] = deque(maxlen=SHARE_WINDOW)
        self._cut_at = float("-inf")
        self._since_cut = [0, 0]
        """Answers, and throttled among them, to the requests sent since the last cut."""
        self._calm_since = 0.0
        self._weighed_at = float("-inf")
        self._quiet_s = QUIET_S
        self._judged: _Judged | None = None
        self._cascade: tuple[float, float | None, float] | None = None
        """(rate, limit, throttled share) where the cuts going on began."""
        self._undecided: tuple[float, int, int] | None = None
        """(when, answers, throttled among them) of a first throttle too close to call."""
        self._shared = None if learned else shared
        self._learned_before = learned is not None
        self._lock = threading.Lock()
        if learned is not None:
            self._start_from(learned)

    @property
    def learned(self) -> Learned | None:
        """The limit found (or carried over), for the next sync; None when none is known."""
        return None if self.limit is None else Learned(self.limit, self.burst)

    def adopt(self, learned: Learned | None) -> None:
        """Go on from what earlier syncs found of the account's limit (read once its owner's
        lock is held: another process may have found it meanwhile), unless this sync has met
        the limit itself."""
        with self._lock:
            if learned is None or self.limit is not None or self._judged is not None:
                return
            self._start_from(learned)
            self._learned_before = True
            self._leave_start()

    def _start_from(self, learned: Learned) -> None:
        self.limit, self.burst = learned.rps, learned.burst
        self._rate = CRUISE * learned.rps
        if self._started is None and learned.burst is not None:
            # Not a request sent yet: the bucket is as full as the account's idle time made
            # it (a burst seen, not assumed: a bucket of one request has none to spend).
            self._credit = SPEND_SHARE * (learned.burst - 1)

    def finish(self) -> None:
        """The sync is done: a probe it was making for other targets found nothing."""
        with self._lock:
            self._leave_start()

    def _leave_start(self) -> None:
        if self._shared is not None:
            self._shared.found(self, self.learned)
            self._shared = None

    @property
    def rate(self) -> float:
        """The requests per second allowed now."""
        return min(self._rate, self.max_rps) if self.max_rps is not None else self._rate

    def reserve(self, now: float) -> float:
        """Take a request slot now (0.0), or say how long to wait before asking again.

        Nothing is booked ahead: a waiting worker asks again, so a rate that rose meanwhile
        serves it at once."""
        with self._lock:
            if self._started is None:
                self._started = self._calm_since = now
            if self._shared is not None:
                self._take_turn(now)
            pace = self._pace()
            wait = self._next_at - BURST_SHARE / pace - now
            # Saturated: a worker waits, or takes a slot that freed less than one interval ago.
            self._grow(now, saturated=wait > -1.0 / pace)
            pace = self._pace()
            if wait > 0:
                judging = self._judged is not None and self._judged.first
                return min(wait, 1.0 / pace, JUDGING_NAP_S if judging else MAX_NAP_S)
            self._next_at = max(self._next_at, now) + 1.0 / pace
            if pace > self.rate:
                self._credit -= 1 - self.rate / pace
                self._spent += 1 - self.rate / pace
                self._spending_until = now
            self._sent_at.append(now)
            while now - self._sent_at[0] > SENT_MEMORY_S:
                self._sent_at.popleft()
            return 0.0

    def _pace(self) -> float:
        """The rate requests go at now: faster than `rate` while the start spends a burst."""
        if self._credit <= 0:
            return self.rate
        return min(SPEND_PACE * self.rate, self.max_rps or math.inf)

    def _take_turn(self, now: float) -> None:
        """Before a first throttle: wait for another target's probe, or start from its limit."""
        assert self._shared is not None
        turn = self._shared.turn(self, now)
        if turn is False:
            self._rate = PATIENT_RPS
            return
        if isinstance(turn, Learned):
            log.debug("starting from %.1f requests/s, the limit another target found", turn.rps)
            self._start_from(turn)
            self._shared = None
        elif self._rate == PATIENT_RPS:
            self._rate = INITIAL_RPS  # the wait is over: a slow start of its own
        if self._shared is not None and self.limit is None and self._accepted >= PROOF_CALLS:
            self._leave_start()

    def _grow(self, now: float, saturated: bool) -> None:
        """Raise the rate for the time workers have been waiting on it."""
        if not saturated or self._judged is not None:
            self._grown_at = None
            return
        if self._grown_at is not None:
            elapsed = now - self._grown_at
            if self.limit is None:
                doubling = max(DOUBLING_S, ROUND_TRIPS_PER_DOUBLING * self._rtt)
                self._rate *= 2.0 ** (elapsed / doubling)
            elif self._confirming:
                doubling = max(CONFIRM_DOUBLING_S, DOUBLING_CALLS / self._rate)
                self._rate *= 2.0 ** (elapsed / doubling)
            elif self._rate < CRUISE * self.limit:
                doubling = max(DOUBLING_S, DOUBLING_CALLS / self._rate)
                self._rate = min(CRUISE * self.limit, self._rate * 2.0 ** (elapsed / doubling))
            elif now - self._calm_since >= max(
                self._quiet_s, min(PROBE_CALLS / self.limit, MAX_PROBE_GAP_S)
            ):
                self._rate += PROBE_PER_S * self.limit * elapsed
            if self.max_rps is not None:
                self._rate = min(self._rate, self.max_rps * 2)
        self._grown_at = now

    def observe(self, sent_at: float, throttled: bool, now: float) -> None:
        """Learn from one answer to a request sent at `sent_at`."""
        with self._lock:
            if throttled and sent_at <= self._spending_until:
                self._spent_too_much()
                return
            self._recent.append(throttled)
            if sent_at >= self._cut_at:
                self._since_cut[0] += 1
                self._since_cut[1] += throttled
            if not throttled:
                self._count_accepted(sent_at, now)
            if self._judged is not None:
                self._judge(sent_at, throttled, now)
            elif throttled and sent_at >= self._cut_at:
                self._throttled(sent_at, now)

    def _spent_too_much(self) -> None:
        """A request of the burst spent at the start was throttled: the bucket was not full
        (another client was busy), or held less than the burst seen (a misread one, or a
        smaller one since). Nothing is said of the limit. The spending ends, and the burst
        kept is what the bucket gave, so the next syncs spend no more than that."""
        if self.burst is not None:
            self.burst = max(1.0, min(self.burst, self._spent))
        self._credit = 0.0

    def _count_accepted(self, sent_at: float, now: float) -> None:
        """Count an accepted answer; raise the limit when more were accepted than it and the
        bucket's burst allow."""
        self._rtt = 0.9 * self._rtt + 0.1 * (now - sent_at) if self._rtt else now - sent_at
        self._accepted += 1
        # When it was sent, as the bucket saw it: answers a busy interpreter reads late come
        # in bunches that no bucket gave.
        self._accepted_at.append(sent_at)
        while self._accepted_at[0] < now - EVIDENCE_SPANS_S[-1]:
            self._accepted_at.popleft()
        if self.limit is None or self._started is None or self._judged is not None:
            return
        if now - self._weighed_at < EVIDENCE_EVERY_S:
            return
        self._weighed_at = now
        burst, times = self._most_burst(), sorted(self._accepted_at)
        for span in EVIDENCE_SPANS_S:
            # Only a span without a throttle: while the bucket is dry, another client's
            # throttled requests leave tokens to us that are no part of our share.
            if now - max(self._started, self._calm_since) < span:
                break
            accepted = len(times) - bisect.bisect_right(times, now - span)
            proven = (accepted - burst) / span
            if proven > PROBE_SUCCESS * self.limit and self._rate > self.limit:
                self._confirming = True  # a probe well past the old limit: climb faster
            self.limit = max(self.limit, proven)

    def _burst(self) -> float:
        """Requests the bucket holds beyond the limit: as seen, or at most `BUCKET_S` of it."""
        assert self.limit is not None
        return self.burst if self.burst is not None else BUCKET_S * self.limit

    def _most_burst(self) -> float:
        """The most the bucket may hold, for evidence that raises the limit: a burst read too
        small at the first throttle (its answers bunched by a busy client) would take a full
        bucket for a higher limit."""
        assert self.limit is not None
        return max(self._burst(), BUCKET_S * self.limit)

    def _throttles_among(self, answers: int) -> int:
        """Throttled answers among the last `answers`."""
        return sum(list(self._recent)[-answers:])

    def _share(self, answers: int) -> float:
        return self._throttles_among(answers) / min(answers, len(self._recent))

    def _throttled(self, sent_at: float, now: float) -> None:
        if self._share(SHARE_WINDOW) <= self.noise:
            return
        self._calm_since = now
        if self.limit is None:
            self._first_throttle(sent_at, now)
        elif self._accepted < THIN_EVIDENCE and self._since_cut[1] == self._since_cut[0]:
            # Nothing accepted since a first estimate that rests on next to nothing: a storm
            # (the first throttles were its start), not the limit, which is still to be met
            # by the climb from the estimate.
            return
        elif self._confirming and self._rate > self.limit:
            # The first estimate was a floor (the bucket may have held less than a second of
            # the limit): the rate that met the limit tells more.
            self._confirming = False
            doubling = max(CONFIRM_DOUBLING_S, DOUBLING_CALLS / self._rate)
            self._met(self._rate * math.log(2) / doubling, self._burst(), sent_at, now)
            self._leave_start()
        elif self._rate > self.limit:
            # A probe past the limit found met it; probe less often from now on.
            self._met(PROBE_PER_S * self.limit, self._most_burst(), sent_at, now)
            self._quiet_s = min(MAX_QUIET_S, max(2 * self._quiet_s, PROBE_CALLS / self.limit))
        elif self._throttles_among(MEASURE_WINDOW) >= 2:
            # Under the limit found (or, still climbing, under the first estimate: the burst
            # was another client's too): what the account accepted of the rate since the last
            # change, when there are enough answers to tell; a fixed step down otherwise.
            self._confirming = False
            answered, throttled = self._since_cut
            share = throttled / answered if answered >= MEASURE_ANSWERS else None
            self._judged = _Judged(now, self._rate, self.limit, share)
            step = BACKOFF if share is None else CRUISE * (1 - share)
            self._cut(step * self._rate, now)

    def _met(self, slope: float, burst: float, sent_at: float, now: float) -> None:
        """A rate rising by `slope` a second met the limit. A bucket holding `burst` runs dry
        once the rate has been past the limit by sqrt(2 x (burst - 1) x slope) (one request
        takes the last token), so the limit is at least that far under the rate the throttled
        request went at; then go back under it."""
        assert self.limit is not None
        buffer = max(0.0, burst - 1)
        # The request before the throttled one, one interval earlier, was accepted.
        went_at = self._rate - slope * (now - sent_at + 1 / self._rate)
        met = went_at - math.sqrt(2 * buffer * slope)
        self.limit = max(self.limit, met)
        self._cut(CRUISE * self.limit, now)

    def _first_throttle(self, sent_at: float, now: float) -> None:
        """Cut to what the bucket can have given; the requests in flight will judge it."""
        assert self._started is not None
        log.debug("first throttle at %.1f requests/s (probing: %s)", self._rate, self._shared)
        if self._accepted < MIN_EVIDENCE:
            # Throttled before hardly anything was accepted: another client drained the
            # bucket, or the service sheds load. No limit to estimate yet: slow down, not to
            # a crawl.
            self._cut(max(STORM_RPS, self._rate / 4), now)
            return
        span = sent_at - self._started
        # Over any span, a bucket gives at most its burst (a second of its rate, at most) and
        # what it refills: the tightest of the spans ending now (a slow start's beginning,
        # one request at a time, left the bucket full).
        whole = self._accepted / (span + BUCKET_S)
        times = [at for at in sorted(self._accepted_at) if at <= sent_at]
        tightest = max(
            ((len(times) - i) / (sent_at - at + BUCKET_S) for i, at in enumerate(times)),
            default=0,
        )
        estimate = max(MIN_RPS, whole, tightest)
        # The burst the estimate allows for: what the whole span accepted beyond it, or (a
        # tighter span's) its second's worth.
        burst = self._accepted - estimate * span if whole >= tightest else estimate * BUCKET_S
        self._judged = _Judged(
            now,
            self._rate,
            None,
            1.0,
            first=True,
            estimate=estimate,
            in_flight=sum(1 for at in self._sent_at if at > sent_at),
        )
        self.limit = estimate
        self.burst = max(1.0, burst)
        self._cut(CRUISE * estimate, now)
        if self._judged.in_flight == 0:  # nothing to wait for: judge on what is known
            judged, self._judged = self._judged, None
            self._judge_first(judged, now)

    def _judge(self, sent_at: float, throttled: bool, now: float) -> None:
        judged = self._judged
        assert judged is not None
        if judged.first:
            if sent_at < judged.at:
                judged.answered += 1
                judged.throttled += throttled
                if judged.answered < min(JUDGE_ANSWERS, judged.in_flight):
                    return
            self._judged = None
            self._judge_first(judged, now)
            return
        if sent_at < judged.at:
            return
        judged.answered += 1
        judged.throttled += throttled
        judged.sends.append((sent_at, throttled))
        after = judged.throttled / judged.answered
        dry = judged.throttled >= DRY_SHOWS[0] and after >= DRY_SHOWS[1]
        if judged.answered < JUDGE_SAMPLE and not dry and now - judged.at < JUDGE_MAX_S:
            return
        self._judged = None
        # Cuts go on while throttles do, each to what the account accepted. Noise keeps the
        # share it had however far the rate falls; a limit's (or a neighbour's) share falls
        # with it: so once the rate is down by `NOISE_LEVER`, a share that did not fall is
        # noise, and the cuts are undone.
        rate, limit, share = self._cascade or (judged.rate_before, judged.limit_before, None)
        share = after if share is None else share
        noise = (
            not dry
            and judged.throttled >= 2
            and self._rate <= NOISE_LEVER * rate
            and after >= NOISE_LEVER * share
            and after <= NOISE_CAP
        )
        if noise:
            # Undo the cuts; a limit this sync thought it found was likely noise too.
            self._cascade = None
            self._restore(rate, now)
            self.limit = limit if self._learned_before else None
            self._tolerate(max(after, share))
        elif judged.throttled == judged.answered:
            # Nothing accepted: a storm (another client hogging the account, the service
            # shedding load), not a limit to measure. Slow down, keep the limit for after.
            self._cut(max(STORM_RPS, self._rate / 4), now)
            self.limit = limit
        elif judged.throttled and not _stopped(judged.sends):
            self._cascade = (rate, limit, share)
            self.limit = max(MIN_RPS, _dry_rate(judged.sends) or self._rate * (1 - after))
            self._cut(CRUISE * self.limit, now)
        else:
            self._cascade = None
            # The throttles stopped: the limit is a little lower than found, or they were a
            # passing burst of another client's. A step down, not the whole cut.
            assert judged.limit_before is not None
            self.limit = max(self._rate / CRUISE, CRUISE * judged.limit_before)
            self._restore(CRUISE * self.limit, now)

    def _judge_first(self, judged: _Judged, now: float) -> None:
        """The requests in flight at the first throttle: a dry bucket throttles most of them,
        noise few (`ASSUMED_NOISE`)."""
        answered, throttled = judged.answered, judged.throttled
        if self._undecided is not None and now - self._undecided[0] < UNDECIDED_S:
            answered += self._undecided[1]
            throttled += self._undecided[2]
        self._undecided = None
        noise = max(self.noise, ASSUMED_NOISE)
        odds = _likelihood(DRY_SHARE, throttled, answered) / _likelihood(noise, throttled, answered)
        enough = len(self._recent) >= NOISE_ANSWERS
        recent = self._share(SHARE_WINDOW) if enough else 0.0
        too_many = enough and _tail(noise, sum(self._recent), len(self._recent)) < NOISE_DOUBT
        if odds >= (DRY_ODDS if self.noise else FIRST_DRY_ODDS) or too_many:
            # A dry bucket accepts of the requests in flight what it refills (one accepted
            # answer more or less is most of the difference among a few): a better estimate
            # than the first when the bucket held little.
            accepted = max(0, judged.answered - judged.throttled - 1)
            in_flight = judged.rate_before * accepted / max(1, judged.answered)
            if in_flight > judged.estimate:
                assert self._started is not None
                self.limit = in_flight
                self.burst = max(1.0, self._accepted - in_flight * (judged.at - self._started))
                self._rate = CRUISE * in_flight
            self._confirming = True
            if self._shared is not None:  # the others start from the estimate, not wait on
                self._shared.found(self, self.learned)
            return
        self._restore(judged.rate_before, now)
        self.limit = self.burst = None
        if odds > NOISE_ODDS:
            # Too few answers to tell: undo the cut, and let them count with the next ones.
            self._undecided = (now, answered, throttled)
        else:
            self._tolerate(recent)

    def _tolerate(self, share: float) -> None:
        self.noise = min(NOISE_CAP, max(self.noise, 1.5 * share, MIN_NOISE))

    def _restore(self, rate: float, now: float) -> None:
        """Undo a cut: the rate, and the wait it set."""
        self._rate = max(self._rate, rate)
        self._next_at = min(self._next_at, now + 1.0 / self._rate)

    def _cut(self, rate: float, now: float) -> None:
        """Lower the rate; the next request waits a whole interval of it, so a dry bucket
        has a token for it."""
        self._rate = max(MIN_RPS, min(self._rate, rate))
        self._next_at = max(self._next_at, now + 1.0 / self._rate)
        self._cut_at = now
        self._since_cut = [0, 0]
        self._grown_at = None

    def acquire(self, cancel: threading.Event) -> float:
        """Wait for a slot on the real clock (Cancelled once `cancel` is set); the send time."""
        while (delay := self.reserve(time.monotonic())) > 0:
            if cancel.wait(delay):
                raise Cancelled()
        return time.monotonic()


def _stopped(sends: list[tuple[float, bool]]) -> bool:
    """Whether the throttles among these requests stopped half way: the tail of a burst, not
    a limit that a rate under it would meet all along."""
    later = sorted(sends)[len(sends) // 2 :]
    return len(later) >= 2 and not any(throttled for _, throttled in later)


def _dry_rate(sends: list[tuple[float, bool]]) -> float | None:
    """The rate a bucket refills at, from requests sent after it ran dry (their first
    throttle): each accepted one took a token it refilled, whatever burst it holds. None
    with too few to tell."""
    sends = sorted(sends)
    first = next((i for i, (_, throttled) in enumerate(sends) if throttled), None)
    if first is None or len(sends) - first < MEASURE_ANSWERS:
        return None
    span = sends[-1][0] - sends[first][0]
    accepted = sum(1 for _, throttled in sends[first:] if not throttled)
    return (accepted - 1) / span if span > 0 else None


def _tail(share: float, throttled: int, answered: int) -> float:
    """The chance of at least `throttled` throttles among `answered` answers, each throttled
    with `share`."""
    return sum(
        math.comb(answered, k) * share**k * (1 - share) ** (answered - k)
        for k in range(throttled, answered + 1)
    )


def _likelihood(share: float, throttled: int, answered: int) -> float:
    """Of `throttled` throttles among `answered` answers, each throttled with `share`."""
    share = min(max(share, 1e-3), 1 - 1e-3)
    accepted = answered - throttled
    return math.exp(throttled * math.log(share) + accepted * math.log(1 - share))
