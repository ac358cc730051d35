"""Every API call bounded: a total deadline per call, and cancellation of a whole run.

botocore's timeouts bound each socket read, not an answer that trickles in a byte at a time,
and its retries multiply them; a stuck worker thread cannot be interrupted at all. So each
HTTP attempt runs on its worker's own thread, watched by one watchdog thread of the process:
once the call's deadline passes, or the run is cancelled, the watchdog shuts the attempt's
socket down, which ends any send or receive blocked on it, and the worker raises instead.
No thread and no hand-off per attempt: a few lock acquisitions, and the watchdog wakes
every `_POLL_S` while attempts are in flight.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .errors import ImageVersionsError

__all__ = [
    "WATCHDOG",
    "CallDeadlineExceeded",
    "CallGuard",
    "Cancelled",
    "close_client",
    "guard_client",
    "guard_view",
    "pause",
]

_POLL_S = 0.1
WATCHDOG = "image-versions-watchdog"
"""The name of the watchdog's thread."""


class Cancelled(ImageVersionsError):
    """The run was asked to stop (SIGINT, SIGTERM): calls in flight are abandoned.

    An Exception, not a BaseException as KeyboardInterrupt is: it is raised on worker threads
    and carried back through their futures, which hold Exceptions; the handlers that would
    catch it with everything else (`except Exception` in a target's run) let it through by
    name, and the command line maps it to the signal's exit status as it does the interrupt.
    """


class CallDeadlineExceeded(ImageVersionsError):
    """One API call spent its whole deadline waiting on the network, attempts added up.

    Raised in place of botocore's send, so `aws_errors` reads it as a timed-out call."""


class _Attempt:
    """One HTTP attempt in flight: when it must end, and the connection it is using."""

    __slots__ = ("cancel", "connection", "ends_at", "stopped")

    def __init__(self, cancel: threading.Event, ends_at: float) -> None:
        self.cancel = cancel
        self.ends_at = ends_at
        self.connection: Any = None
        self.stopped = False


class _Watchdog:
    """Stops the attempts in flight that are past their deadline or whose run is cancelled.

    One daemon thread for the whole process, started with the first attempt and ending once
    no attempt has been in flight for a while. `lock` also guards which attempt owns which
    connection: a connection back in the pool and taken by another worker is never shut down
    for the attempt that used it before.
    """

    IDLE_POLLS = 10
    """Polls without an attempt in flight after which the thread ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._attempts: set[_Attempt] = set()
        self._running = False

    def watch(self, attempt: _Attempt) -> None:
        with self.lock:
            self._attempts.add(attempt)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=WATCHDOG, daemon=True).start()

    def release(self, attempt: _Attempt) -> None:
        with self.lock:
            self._attempts.discard(attempt)
            connection = attempt.connection
            if connection is not None and connection.guarded_attempt is attempt:
                connection.guarded_attempt = None

    def claim(self, connection: Any) -> None:
        """`connection` is now this thread's attempt's (if it has one); shut down at once when
        that attempt was stopped before its socket existed."""
        attempt: _Attempt | None = getattr(_CURRENT, "attempt", None)
        if attempt is None:
            return
        with self.lock:
            attempt.connection = connection
            connection.guarded_attempt = attempt
            if attempt.stopped:
                _shut_down(connection)

    def _run(self) -> None:
        idle = 0
        while True:
            time.sleep(_POLL_S)
            now = time.monotonic()
            with self.lock:
                if not self._attempts:
                    idle += 1
                    if idle >= self.IDLE_POLLS:
                        self._running = False
                        return
                    continue
                idle = 0
                for attempt in self._attempts:
                    if not attempt.stopped and (attempt.cancel.is_set() or now >= attempt.ends_at):
                        attempt.stopped = True
                        connection = attempt.connection
                        if connection is not None and connection.guarded_attempt is attempt:
                            _shut_down(connection)


def _shut_down(connection: Any) -> None:
    """End every send and receive blocked on `connection`'s socket (the worker then sees a
    closed connection); the connection is discarded, never reused."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()
"""The attempt this thread is making, for the connection it takes from the pool."""


class CallGuard:
    """Bounds every call of the clients it guards: network time per call, and cancellation.

    botocore's timeouts bound each socket read, not an answer that trickles in a byte at a
    time, and its retries multiply them. Each API call (`before-call`, once per call) gets
    `deadline_s` of network time, spent by its HTTP attempts together; waits for the rate
    limit and back-offs between attempts do not count, so a healthy but rate-limited call never
    runs out. The watchdog stops an attempt once what is left of the budget is spent, or once
    `cancel` is set.

    Budgets are per thread and per service: an STS call that refreshes credentials while a
    SageMaker request is being signed has its own.
    """

    def __init__(self, deadline_s: float, cancel: threading.Event) -> None:
        self.deadline_s = deadline_s
        self.cancel = cancel
        self._local = threading.local()

    def _budgets(self) -> dict[str, float]:
        """service -> network seconds left to this thread's current call."""
        budgets: dict[str, float] | None = getattr(self._local, "budgets", None)
        if budgets is None:
            budgets = self._local.budgets = {}
        return budgets

    def start_call(self, service: str) -> None:
        self._budgets()[service] = self.deadline_s
        self.check_call(service)

    def check_call(self, service: str) -> None:
        """Cancelled, or CallDeadlineExceeded, when the call must not go on (before a call, and
        between attempts instead of backing off)."""
        if self.cancel.is_set():
            raise Cancelled()
        if self._budgets().get(service, self.deadline_s) <= 0:
            raise CallDeadlineExceeded(
                f"no complete answer within the call deadline of {self.deadline_s:g} s"
            )

    def send(self, service: str, http_send: Callable[[Any], Any], request: Any) -> Any:
        self.check_call(service)
        budgets = self._budgets()
        left = budgets.get(service, self.deadline_s)
        started = time.monotonic()
        attempt = _Attempt(self.cancel, started + left)
        outer, _CURRENT.attempt = getattr(_CURRENT, "attempt", None), attempt
        _WATCHDOG.watch(attempt)
        try:
            return http_send(request)
        except Exception:
            if attempt.stopped:  # by the watchdog: the call is over, whatever botocore saw
                budgets[service] = 0.0
                self.check_call(service)
            raise
        finally:
            _WATCHDOG.release(attempt)
            _CURRENT.attempt = outer
            spent = time.monotonic() - started
            budgets[service] = min(budgets.get(service, left), left - spent)


GUARDS: weakref.WeakKeyDictionary[Any, CallGuard] = weakref.WeakKeyDictionary()
"""Each client's guard, for waits between calls (`patiently`) that must end on cancellation."""


def guard_client(client: Any, guard: CallGuard) -> Any:
    """Put every call of a botocore `client` under `guard`; the client, for chaining."""
    # botocore offers no public hook around the HTTP send itself; its endpoint's session is
    # the one seam where an attempt can be bounded, and its pools' connection classes the one
    # place where the attempt's socket is known.
    service = client.meta.service_model.service_id.hyphenize()
    endpoint = client._endpoint
    http_session = endpoint.http_session
    http_session._pool_classes_by_scheme.update(_watched_pools())
    endpoint.http_session = GuardedHttpSession(http_session, guard, service)
    client.meta.events.register(f"before-call.{service}", lambda **_: guard.start_call(service))
    GUARDS[client] = guard
    return client


def guard_view(view: Any, client: Any) -> None:
    """`view`, whose methods make guarded `client`'s calls, pauses under `client`'s guard."""
    GUARDS[view] = GUARDS[client]


def close_client(client: Any) -> None:
    """Close `client`'s connections: a target's end them when it is done, not the run's end."""
    client.close()


def pause(call: Callable[..., Any], seconds: float) -> None:
    """Sleep between calls of `call`'s client; Cancelled as soon as its run is cancelled."""
    guard = GUARDS.get(getattr(call, "__self__", None))
    if guard is None:
        time.sleep(seconds)
    elif guard.cancel.wait(seconds):
        raise Cancelled()


class GuardedHttpSession:
    """botocore's HTTP session, each send made under a `CallGuard`."""

    def __init__(self, inner: Any, guard: CallGuard, service: str) -> None:
        self._inner = inner
        self._guard = guard
        self._service = service

    def send(self, request: Any) -> Any:
        return self._guard.send(self._service, self._inner.send, request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _WatchedConnection:
    """Mixed into botocore's connections: the attempt that uses one claims it (`_Watchdog`)."""

    guarded_attempt: _Attempt | None = None

    def connect(self) -> None:
        _WATCHDOG.claim(self)
        super().connect()  # type: ignore[misc]
        _WATCHDOG.claim(self)  # its socket exists now: shut down if stopped meanwhile

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _WATCHDOG.claim(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


@functools.cache
def _watched_pools() -> dict[str, type]:
    """botocore's connection pools by scheme, their connections watched."""
    import botocore.awsrequest as aws

    def watched(pool: Any) -> type:
        connection = type(
            f"Watched{pool.ConnectionCls.__name__}", (_WatchedConnection, pool.ConnectionCls), {}
        )
        return type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": connection})

    return {
        "http": watched(aws.AWSHTTPConnectionPool),
        "https": watched(aws.AWSHTTPSConnectionPool),
    }
