"""SageMaker clients, one botocore client shared by the targets of a sync that reach SageMaker
the same way (region, endpoint, profile, retries, timeouts), each call made as its target.

Creating a botocore client costs about as much CPU as 20 of its calls (a class of some 400
methods, the endpoint resolver, the event handlers): an organization's member accounts each
paid it, and at 50 images an account that was a third of the sync. A `TargetClient` is one
target's view of a shared client: while one of its calls runs, the calling thread is bound to
the target, whose credentials sign the request (botocore's per-request `request_credentials`),
whose rate limiter paces each attempt (ratelimit.py) and whose `ApiStats` count it. Nothing of
one target's reaches another's calls, but botocore's retry quota (for errors other than
throttling, which this never leaves to botocore) is the shared client's. botocore's adaptive
retry mode paces each client by its own throttles, so its clients are never shared.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from .aws_errors import THROTTLING_CODES, response_error_code
from .errors import ConfigError
from .guard import CallGuard, guard_client, guard_view
from .ratelimit import AdaptiveRateLimiter
from .source import (
    ApiStats,
    ClientSettings,
    RoleSource,
    assumed_role_credentials,
    aws_credentials,
    client_config,
    known_regions,
    role_source,
    session_for,
)

__all__ = ["Clients", "TargetClient", "make_client"]

_BOUND = threading.local()
"""The target whose call this thread is making (`TargetClient`)."""


@dataclass(frozen=True)
class _Target:
    """What one target's calls sign with, are paced by and are counted in."""

    credentials: Any
    limiter: AdaptiveRateLimiter
    stats: ApiStats


def _bound() -> _Target:
    target: _Target | None = getattr(_BOUND, "target", None)
    if target is None:
        raise RuntimeError("a shared SageMaker client was called outside a TargetClient")
    return target


class TargetClient:
    """One target's SageMaker client: the shared client's methods, called as this target."""

    def __init__(self, shared: Any, target: _Target, *, owned: bool) -> None:
        self._shared = shared
        self._target = target
        self._owned = owned

    @property
    def meta(self) -> Any:
        return self._shared.meta

    @contextmanager
    def bound(self) -> Iterator[None]:
        """This thread's calls of the shared client are this target's for the block."""
        outer = getattr(_BOUND, "target", None)
        _BOUND.target = self._target
        try:
            yield
        finally:
            _BOUND.target = outer

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._shared, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def call(view: TargetClient, *args: Any, **kwargs: Any) -> Any:
            with view.bound():
                return attribute(*args, **kwargs)

        return types.MethodType(call, self)  # a bound method: `pause` finds its guard

    def close(self) -> None:
        """Close the connections of a client of this target's own (a shared one's close with
        their `Clients`)."""
        if self._owned:
            self._shared.close()


class Clients:
    """The SageMaker clients of one sync's targets, shared where their settings allow, each
    with up to `pool_size` connections (every call the sync may have in flight); and their
    credentials, those before the last role shared by the targets that differ only in it."""

    def __init__(self, pool_size: int, *, shared: bool = True) -> None:
        self.pool_size = pool_size
        self.shared = shared
        """False: each target's client is its own, closed with it."""
        self._lock = threading.Lock()
        self._shared: dict[ClientSettings, Any] = {}
        self._sources: dict[ClientSettings, RoleSource] = {}
        self._source_locks: dict[ClientSettings, threading.Lock] = {}

    def credentials(self, settings: ClientSettings, guard: CallGuard) -> Any:
        """`aws_credentials(settings, guard)`; an organization's member accounts share the
        source's credentials and the STS clients that assume each member's role, found by the
        first member to need them (an error is not kept: each member meets it again)."""
        if not settings.roles:
            return aws_credentials(settings, guard)
        key = replace(settings, roles=settings.roles[:-1], organization=None)
        with self._lock:
            lock = self._source_locks.setdefault(key, threading.Lock())
        with lock:
            source = self._sources.get(key)
            if source is None:
                source = self._sources[key] = role_source(key, guard, self.pool_size)
        return assumed_role_credentials(source.credentials, settings.roles[-1], source.sts)

    def client(
        self,
        settings: ClientSettings,
        credentials: Any,
        stats: ApiStats,
        guard: CallGuard,
        limiter: AdaptiveRateLimiter | None = None,
    ) -> TargetClient:
        """A target's client; the shared one made with the first target's `guard` (one sync's
        targets share its cancellation, and the deadline is part of the settings shared)."""
        target = _Target(credentials, limiter or AdaptiveRateLimiter(settings.max_rps), stats)
        if not self.shared or settings.retry_mode == "adaptive":
            return _view(_sagemaker_client(settings, guard), target, owned=True)
        key = replace(settings, source="", roles=(), organization=None, max_rps=None)
        with self._lock:  # the first target makes it, the others wait for it
            shared = self._shared.get(key)
            if shared is None:
                shared = self._shared[key] = _sagemaker_client(
                    replace(settings, pool_size=self.pool_size), guard
                )
        return _view(shared, target, owned=False)

    def close(self) -> None:
        with self._lock:
            shared, self._shared = list(self._shared.values()), {}
        for client in shared:
            client.close()


def make_client(
    settings: ClientSettings,
    stats: ApiStats,
    guard: CallGuard,
    limiter: AdaptiveRateLimiter | None = None,
    *,
    credentials: Any = None,
    clients: Clients | None = None,
) -> TargetClient:
    """A SageMaker client for one region, counting into `stats`, its request rate adapted to
    throttling and capped at settings.max_rps (ratelimit.py), every call (and every STS call
    that refreshes its credentials) bounded by `guard`; with `credentials`
    (`aws_credentials(settings, guard)`) when the caller has them already; shared with the
    other targets of `clients`, else its own.

    ConfigError when the region is unknown, the profile missing, no credentials are found or a
    role cannot be assumed.
    """
    if settings.region not in known_regions():
        raise ConfigError(f"unknown region {settings.region!r}: SageMaker has no endpoint there")
    clients = clients or Clients(settings.pool_size, shared=False)
    if credentials is None:
        credentials = clients.credentials(settings, guard)
    return clients.client(settings, credentials, stats, guard, limiter)


def _view(shared: Any, target: _Target, *, owned: bool) -> TargetClient:
    view = TargetClient(shared, target, owned=owned)
    guard_view(view, shared)
    return view


def _sagemaker_client(settings: ClientSettings, guard: CallGuard) -> Any:
    """A botocore SageMaker client with no credentials of its own, every call under `guard`,
    each signed, paced and counted as the target its thread is bound to."""
    session = session_for(settings, None)
    config = client_config(settings)
    client = session.client("sagemaker", endpoint_url=settings.endpoint_url, config=config)
    guard_client(client, guard)
    sent = threading.local()  # each worker has one attempt in flight at a time

    def before_call(model: Any, **_: Any) -> None:
        _bound().stats.count_call(model.name)

    def before_sign(request: Any, **_: Any) -> None:
        # A copy: the signing context may be botocore's, shared by the requests it resolved.
        signing = dict(request.context.get("signing", {}))
        signing["request_credentials"] = _bound().credentials
        request.context["signing"] = signing

    def before_send(**_: Any) -> None:
        sent.at = _bound().limiter.acquire(guard.cancel)

    def needs_retry(
        response: Any = None, caught_exception: Any = None, attempts: int = 1, **_: Any
    ) -> float | None:
        """Count the attempt and tell the limiter; a throttled one goes straight back to the
        limiter (0 s: its pace is the back-off) while attempts remain; anything else is left
        to botocore's retry handler (None)."""
        target = _bound()
        throttled = response is not None and response_error_code(response[1]) in THROTTLING_CODES
        target.stats.count_attempt(throttled)
        if caught_exception is None:
            target.limiter.observe(getattr(sent, "at", 0.0), throttled, time.monotonic())
        if caught_exception is not None or (
            response is not None and response[0].status_code >= 400
        ):
            guard.check_call("sagemaker")  # raises instead of a back-off past the deadline
        return 0.0 if throttled and attempts < settings.max_attempts else None

    events = client.meta.events
    events.register("before-call.sagemaker", before_call)
    events.register("before-sign.sagemaker", before_sign)
    events.register("before-send.sagemaker", before_send)
    events.register_first("needs-retry.sagemaker", needs_retry)
    return client
