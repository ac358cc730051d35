"""The request rate of one target: adaptive by default (AIMD on throttling), capped on request.

Each target (an account and region) has its own API limits, which a user rarely knows, so each
target's client has a limiter of its own, shared by that target's workers, that finds the rate
the service accepts:

- **Slow start.** It begins at `INITIAL_RPS` and doubles every `DOUBLING_S` for as long as
  workers are waiting on it, until the first throttling answer. An endpoint that never
  throttles is soon limited only by the workers. When the target's last sync was throttled,
  this one starts at the rate that sync ended at (`ssthresh`, kept in the target's state
  directory) and doubles only every `HINT_DOUBLING_S` until its first throttle: a scheduled
  sync of a rate-limited account starts near its limit, and a limit that was raised meanwhile
  is found within seconds.
- **Multiplicative decrease.** A throttling answer to a request sent after the last decrease
  sets the rate to `DECREASE` x the lower of the current rate and the rate of accepted answers
  over the last second (what the service demonstrably allows, once there are `MIN_EVIDENCE`
  of them). At high rates (`STRAY_EVIDENCE` accepted answers a second) a throttle cuts only
  when at least `THROTTLED_SHARE` of the last second's answers were throttles; and no cut goes
  below `PEAK_FLOOR` of the most answers accepted in one second so far. Throttles of requests sent
  before that decrease say nothing new and are ignored, so one burst counts once; and there
  is at most one decrease every `DECREASE_INTERVAL_S`.
- **Additive increase.** After a throttle the rate grows by `INCREASE_PER_S` of itself each
  second while workers wait on it, probing slowly for spare capacity; after `QUIET_S` without
  a throttle it doubles every `RECOVERY_DOUBLING_S` instead, so a burst of throttles that
  had nothing to do with this client's rate costs seconds, not the rest of the sync.

`max_rps` (`--max-rps`) caps the rate on top. Requests are spaced evenly (a burst of at most
`BURST_S` of the rate), so the service's own bucket refills between them.

The arithmetic (`reserve`, `observe`) takes the time as an argument, so it is tested against a
simulated service without sleeping; `acquire` is the same on the real clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from pipeline.guard import Cancelled

__all__ = ["AdaptiveRateLimiter"]

INITIAL_RPS = 100.0
DOUBLING_S = 0.06
HINT_DOUBLING_S = 5.0
DECREASE = 0.9
QUIET_S = 10.0
RECOVERY_DOUBLING_S = 2.0
INCREASE_PER_S = 0.02
MIN_RPS = 1.0
DECREASE_INTERVAL_S = 0.5
"""At most one decrease per interval: throttles that do not come from a rate limit (a
service-side blip) would otherwise drive the rate down answer after answer."""
BURST_S = 0.05
_WINDOW_S = 1.0
MIN_EVIDENCE = 5
PEAK_FLOOR = 0.25
"""Cuts stop at this share of the most answers ever accepted in one second of the sync: a
service that throttles a steady share of requests whatever the rate would otherwise drive the
rate to a crawl."""
THROTTLED_SHARE = 0.05
STRAY_EVIDENCE = 50
"""With this many accepted answers in the last second, only a throttled share of them of at
least `THROTTLED_SHARE` cuts the rate: at a high rate, a stray throttle (a blip, another
client's burst) says nothing of it. At low rates, where limits bite, every throttle counts."""
"""Accepted answers in the last second needed before their rate is taken as the limit (at
the start of a sync, or in a burst of throttles, there are none to go by)."""


class AdaptiveRateLimiter:
    """A thread-safe request pacer for one target (see the module docstring)."""

    def __init__(
        self, max_rps: float | None = None, *, adaptive: bool = True, ssthresh: float | None = None
    ) -> None:
        if max_rps is not None and max_rps <= 0:
            raise ValueError("max_rps must be positive")
        self.max_rps = max_rps
        self.adaptive = adaptive
        self.ssthresh = ssthresh
        """The rate of the last decrease, this sync's or (given) the target's last sync's."""
        self._throttled = False
        self._rate = (ssthresh or INITIAL_RPS) if adaptive else None
        self._next_at = 0.0  # when the next request may go (GCRA's theoretical arrival time)
        self._grown_at: float | None = None
        self._decreased_at = float("-inf")
        self._accepted: deque[float] = deque()
        self._refused: deque[float] = deque()
        self._peak_accepted = 0.0
        self._lock = threading.Lock()

    @property
    def learned_rps(self) -> float | None:
        """The rate to start the target's next sync from: where this one ended, when it was
        ever throttled (now or in an earlier sync); None when nothing was learned."""
        return None if self.ssthresh is None else self._rate

    @property
    def rate(self) -> float | None:
        """The requests per second allowed now; None when nothing limits them."""
        rates = [r for r in (self._rate, self.max_rps) if r is not None]
        return min(rates) if rates else None

    def reserve(self, now: float) -> float:
        """Take a request slot now (0.0), or say how long to wait before asking again.

        Nothing is booked ahead: a waiting worker asks again, so a rate that rose meanwhile
        serves it at once."""
        with self._lock:
            rate = self.rate
            if rate is None:
                return 0.0
            wait = self._next_at - BURST_S - now
            # Saturated: a worker waits, or takes a slot that freed less than one interval ago.
            self._grow(now if wait > -1.0 / rate else None)
            rate = self.rate or rate
            if wait > 0:
                return min(wait, 1.0 / rate)
            self._next_at = max(self._next_at, now) + 1.0 / rate
            return 0.0

    def _grow(self, waiting_since: float | None) -> None:
        """Raise the adaptive rate for the time workers have been waiting on it."""
        if waiting_since is None or self._rate is None:
            self._grown_at = None
            return
        if self._grown_at is not None:
            elapsed = waiting_since - self._grown_at
            quiet = waiting_since - self._decreased_at >= QUIET_S
            if self._throttled and not quiet:
                self._rate *= 1.0 + INCREASE_PER_S * elapsed
            elif self._throttled:
                self._rate *= 2.0 ** (elapsed / RECOVERY_DOUBLING_S)
            else:
                doubling = DOUBLING_S if self.ssthresh is None else HINT_DOUBLING_S
                self._rate *= 2.0 ** (elapsed / doubling)
            if self.max_rps is not None:
                self._rate = min(self._rate, self.max_rps * 2)
        self._grown_at = waiting_since

    def observe(self, sent_at: float, throttled: bool, now: float) -> None:
        """Learn from one answer to a request sent at `sent_at`."""
        with self._lock:
            for answers in (self._accepted, self._refused):
                while answers and answers[0] < now - _WINDOW_S:
                    answers.popleft()
            (self._refused if throttled else self._accepted).append(now)
            self._peak_accepted = max(self._peak_accepted, len(self._accepted) / _WINDOW_S)
            stale = sent_at < self._decreased_at or now < self._decreased_at + DECREASE_INTERVAL_S
            if not throttled or not self.adaptive or self._rate is None or stale:
                return
            accepted, refused = len(self._accepted), len(self._refused)
            if accepted >= STRAY_EVIDENCE and refused / (accepted + refused) < THROTTLED_SHARE:
                return  # a stray throttle among many accepted answers says nothing of the rate
            base = self._rate
            if accepted >= MIN_EVIDENCE:
                base = min(base, accepted / _WINDOW_S)
            floor = max(MIN_RPS, PEAK_FLOOR * self._peak_accepted)
            self._rate = max(floor, DECREASE * base)
            self.ssthresh = self._rate
            self._throttled = True
            self._decreased_at = now
            self._grown_at = None

    def acquire(self, cancel: threading.Event) -> float:
        """Wait for a slot on the real clock (Cancelled once `cancel` is set); the send time."""
        while (delay := self.reserve(time.monotonic())) > 0:
            if cancel.wait(delay):
                raise Cancelled()
        return time.monotonic()
