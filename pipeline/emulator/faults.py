"""Fault injection: latency, throttling, server errors and refusals drawn per request."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .validation import ACCESS_DENIED, INTERNAL_FAILURE, THROTTLING, VALIDATION, ApiError

__all__ = ["Faults"]


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
    _rng: random.Random = field(
        default_factory=random.Random, init=False, repr=False, compare=False
    )
    _rng_seed: int | None = field(default=None, init=False, repr=False, compare=False)
    _bucket_rate: float | None = field(default=None, init=False, repr=False, compare=False)
    _tokens: float = field(default=0.0, init=False, repr=False, compare=False)
    _refilled_at: float = field(default=0.0, init=False, repr=False, compare=False)

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

    def _take_token(self, now: float) -> bool:
        """Token bucket holding up to one second of requests (at least one)."""
        rate = self.rate_limit_rps
        if rate is None:
            return True
        capacity = max(1.0, rate)
        if self._bucket_rate != rate:
            self._bucket_rate, self._tokens, self._refilled_at = rate, capacity, now
        self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
