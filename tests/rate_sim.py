"""A simulated SageMaker account and the product's workers, in virtual time, to test the rate
limiter's arithmetic against every case of the issue without sleeping.

The account is a token bucket (`limit_rps`, holding `capacity` requests, full at the start),
shared with a steady `neighbour` client (another tool of the same account, sending evenly
spaced requests whatever happens) and throttling a share `noise` of requests at random,
whatever the rate. Each target's `workers` take calls one at a time: a call waits for the
limiter, takes `cpu_s` of the one interpreter shared by every target (so many targets at once
are CPU-bound, as in a real process), reaches the account, and is answered `latency_s` later.
A throttled attempt is retried as the product retries it: straight back to the limiter.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from pipeline.ratelimit import AdaptiveRateLimiter

LATENCY_S = 0.02
WORKERS = 16


@dataclass
class Account:
    """One account and region's limits, and what it answered."""

    limit_rps: float | None = None
    capacity: float | None = None
    """Requests the bucket holds; None for one second of the limit (at least one)."""
    noise: float = 0.0
    neighbour_rps: float | None = None
    storm: tuple[float, float] | None = None
    """From, to: every request throttled (another client hogging the account)."""
    jitter_s: float = 0.0
    """How late, at most, a request reaches the account after it was sent (uniformly at
    random): a real client's threads, interpreter and connection do not keep its pacing."""
    seed: int = 7
    neighbour_attempts: int = 0
    neighbour_throttled: int = 0
    _tokens: float = field(default=-1.0, init=False)
    _refilled: float = field(default=0.0, init=False)
    _neighbour_next: float = field(default=0.0, init=False)
    _rng: random.Random = field(init=False)
    _jitter: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._jitter = random.Random(self.seed + 1)
        if self.limit_rps is not None:
            self._tokens = self.bucket_size

    @property
    def bucket_size(self) -> float:
        assert self.limit_rps is not None
        return self.capacity if self.capacity is not None else max(1.0, self.limit_rps)

    def _take(self, at: float) -> bool:
        if self.limit_rps is None:
            return True
        self._tokens = min(self.bucket_size, self._tokens + (at - self._refilled) * self.limit_rps)
        self._refilled = at
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def late(self) -> float:
        """How late a request sent now reaches the account."""
        return self.jitter_s * self._jitter.random()

    def accepts(self, at: float) -> bool:
        """Whether our request arriving at `at` is served (arrivals come in time order)."""
        if self.neighbour_rps:
            while self._neighbour_next <= at:
                self.neighbour_attempts += 1
                self.neighbour_throttled += not self._take(self._neighbour_next)
                self._neighbour_next += 1.0 / self.neighbour_rps
        if self.storm is not None and self.storm[0] <= at < self.storm[1]:
            return False
        if not self._take(at):
            return False
        return not (self.noise and self._rng.random() < self.noise)


@dataclass
class Target:
    """One target's sync: its limiter, account, calls and workers, and what it saw."""

    limiter: AdaptiveRateLimiter
    account: Account
    calls: int
    workers: int = WORKERS
    attempts: int = 0
    throttled: int = 0
    finished: float = 0.0
    rates: list[tuple[float, float]] = field(default_factory=list)
    """(time, the limiter's rate) after each answer."""

    @property
    def neighbour_share(self) -> float:
        return self.account.neighbour_throttled / max(1, self.account.neighbour_attempts)


def run(
    targets: list[Target],
    *,
    latency_s: float = LATENCY_S,
    cpu_s: float = 0.0,
) -> list[Target]:
    """Run every target's sync side by side until each has made all its calls."""
    queue: list[tuple[float, int, int, str, float]] = []
    order = 0

    def push(at: float, target: int, kind: str, sent_at: float = 0.0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(queue, (at, order, target, kind, sent_at))

    remaining = [target.calls for target in targets]
    for index, target in enumerate(targets):
        for _ in range(target.workers):
            push(0.0, index, "next")
    cpu_free = 0.0
    while queue:
        now, _, index, kind, sent_at = heapq.heappop(queue)
        target = targets[index]
        if kind == "next":
            if remaining[index] == 0:
                continue
            remaining[index] -= 1
            push(now, index, "try")
        elif kind == "try":
            wait = target.limiter.reserve(now)
            if wait > 0:
                push(now + wait, index, "try")
                continue
            arrives = max(now, cpu_free)
            cpu_free = arrives + cpu_s
            target.attempts += 1
            if target.account.jitter_s:
                push(arrives + target.account.late(), index, "arrive", now)
                continue
            accepted = target.account.accepts(arrives)
            push(arrives + latency_s, index, "ok" if accepted else "429", now)
        elif kind == "arrive":  # in the order requests reach the account, not were sent
            accepted = target.account.accepts(now)
            push(now + latency_s, index, "ok" if accepted else "429", sent_at)
        else:
            throttled = kind == "429"
            target.limiter.observe(sent_at, throttled, now)
            target.rates.append((now, target.limiter.rate))
            if throttled:
                target.throttled += 1
                push(now, index, "try")  # the product retries through the limiter at once
            else:
                target.finished = max(target.finished, now)
                push(now, index, "next")
    return targets
