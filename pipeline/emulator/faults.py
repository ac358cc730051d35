"""Fault injection: latency, throttling, server errors and refusals drawn per request.

The rate limit is a token bucket (``rate_limit_rps``, ``bucket_capacity``) which a simulated
steady neighbour (``neighbour_rps``: another client of the same account) can share.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .validation import ACCESS_DENIED, INTERNAL_FAILURE, THROTTLING, VALIDATION, ApiError

__all__ = ["Faults"]

_WHOLE_TOKEN = 1 - 1e-9
"""A token, less the rounding of adding up refills: a client at exactly the rate passes."""


@dataclass
class Faults:
    """Faults injected into HTTP requests; mutable at runtime, drawn reproducibly from ``seed``."""

    latency_s: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    throttle_burst: int = 0
    rate_limit_rps: float | None = None
    operations: frozenset[str] | None = None
    seed: int = 0
    spike_rate: float = 0.0
    """Probability that a request is delayed by an extra ``spike_s`` seconds."""
    spike_s: float = 0.0
    token_expiry_rate: float = 0.0
    """Probability that a request carrying a NextToken is refused as expired."""
    denied_regions: frozenset[str] = frozenset()
    """Regions whose every request is refused with AccessDeniedException."""
    bucket_capacity: float | None = None
    """Tokens the rate limit's bucket holds; None: one second of the rate (at least one)."""
    neighbour_rps: float | None = None
    """Another client of the account taking tokens from the same bucket, at this many evenly
    spaced requests a second (needs ``rate_limit_rps``); its requests are simulated, not
    served, and counted in ``neighbour_attempts`` and ``neighbour_throttled``."""
    neighbour_attempts: int = field(default=0, init=False, compare=False)
    neighbour_throttled: int = field(default=0, init=False, compare=False)
    neighbour_seconds: float = field(default=0.0, init=False, compare=False)
    """From the bucket's start to the neighbour's last simulated request (the counts are
    since that start): the window of its achieved rate."""
    _rng: random.Random = field(
        default_factory=random.Random, init=False, repr=False, compare=False
    )
    _rng_seed: int | None = field(default=None, init=False, repr=False, compare=False)
    _bucket: tuple[float, float, float | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """The (rate, capacity, neighbour rate) the bucket was started with."""
    _tokens: float = field(default=0.0, init=False, repr=False, compare=False)
    _refilled_at: float = field(default=0.0, init=False, repr=False, compare=False)
    _started_at: float = field(default=0.0, init=False, repr=False, compare=False)

    def applies_to(self, operation: str) -> bool:
        """Whether faults apply to ``operation``."""
        return self.operations is None or operation in self.operations

    def delay(self, operation: str) -> float:
        """Seconds to hold one request: the fixed latency plus a drawn spike (caller locks)."""
        if not self.applies_to(operation):
            return 0.0
        spike = self.spike_s if self.spike_rate > 0 and self._random() < self.spike_rate else 0
        return self.latency_s + spike

    def draw(
        self, operation: str, now: float, *, region: str = "", has_token: bool = False
    ) -> ApiError | None:
        """Decide the fault for one request at monotonic time ``now`` (caller holds a lock)."""
        if not self.applies_to(operation):
            return None
        if region in self.denied_regions:
            return ApiError(
                ACCESS_DENIED, f"User is not authorized to perform: sagemaker:{operation}"
            )
        if has_token and self.token_expiry_rate > 0 and self._random() < self.token_expiry_rate:
            return ApiError(VALIDATION, "The NextToken is expired or invalid.")
        if self.throttle_burst > 0:
            self.throttle_burst -= 1
            return ApiError(THROTTLING, "Rate exceeded")
        if not self._take_token(now):
            return ApiError(THROTTLING, "Rate exceeded")
        if self.throttle_rate > 0 and self._random() < self.throttle_rate:
            return ApiError(THROTTLING, "Rate exceeded")
        if self.error_rate > 0 and self._random() < self.error_rate:
            return ApiError(INTERNAL_FAILURE, "An internal error occurred.", status=500)
        return None

    def _random(self) -> float:
        if self._rng_seed != self.seed:
            self._rng = random.Random(self.seed)
            self._rng_seed = self.seed
        return self._rng.random()

    def refill(self) -> None:
        """Start the bucket again, full, at the next request; the neighbour starts again
        with it, its counts from zero."""
        self._bucket = None

    def _take_token(self, now: float) -> bool:
        """Take a token at monotonic time ``now``, after the neighbour's requests due by then.

        The bucket starts full at the first request (and again after a change of its settings
        or a :meth:`refill`), holds ``bucket_capacity`` tokens (one second of the rate, at
        least one, by default) and refills continuously. The neighbour's requests come every
        ``1 / neighbour_rps`` seconds from that start, the first at the start; each is
        replayed at its own time, in order with the refill, taking a token or counting as
        throttled. The cost is one step per neighbour request, however long the emulator
        stood idle.
        """
        rate = self.rate_limit_rps
        if rate is None:
            return True
        capacity = max(1.0, rate) if self.bucket_capacity is None else self.bucket_capacity
        settings = (rate, capacity, self.neighbour_rps)
        if self._bucket != settings:
            self._bucket, self._tokens = settings, capacity
            self._refilled_at = self._started_at = now
            self.neighbour_attempts = self.neighbour_throttled = 0
            self.neighbour_seconds = 0.0
        if self.neighbour_rps:
            self._replay_neighbour(now, rate, capacity, self.neighbour_rps)
        self._refill(now, rate, capacity)
        if self._tokens < _WHOLE_TOKEN:
            return False
        self._tokens -= 1
        return True

    def _replay_neighbour(self, now: float, rate: float, capacity: float, every: float) -> None:
        """The neighbour's requests from its last one to ``now``, against the bucket."""
        while (arrival := self._started_at + self.neighbour_attempts / every) <= now:
            self._refill(arrival, rate, capacity)
            self.neighbour_attempts += 1
            if self._tokens >= _WHOLE_TOKEN:
                self._tokens -= 1
            else:
                self.neighbour_throttled += 1
            self.neighbour_seconds = arrival - self._started_at

    def _refill(self, now: float, rate: float, capacity: float) -> None:
        self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
