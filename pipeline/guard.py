"""Every API call bounded: a total deadline per call, and cancellation of a whole run.

botocore's timeouts bound each socket read, not an answer that trickles in a byte at a time,
and its retries multiply them; a stuck worker thread cannot be interrupted at all. So each
HTTP attempt runs on a sender thread of the worker's own while the worker waits for it, at
most until the call's deadline or until the run is cancelled, and then abandons it.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .errors import ImageVersionsError

__all__ = [
    "CallDeadlineExceeded",
    "CallGuard",
    "Cancelled",
    "close_client",
    "guard_client",
    "pause",
]

_POLL_S = 0.1


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


_STOP = object()


class _Sender:
    """A daemon thread doing one worker's HTTP sends, so the worker can stop waiting for them.

    A send stuck on a server that trickles bytes cannot be interrupted; its worker abandons the
    sender at the call's deadline (or on cancellation) and takes a new one. A daemon thread
    never holds up the process's exit; `stop` ends it once its current send is over.
    """

    def __init__(self, send: Callable[[Any], Any]) -> None:
        self._send = send
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="image-versions-http", daemon=True).start()

    def stop(self) -> None:
        self.requests.put(_STOP)

    def _serve(self) -> None:
        while (request := self.requests.get()) is not _STOP:
            try:
                self.outcomes.put((self._send(request), None))
            except BaseException as exc:  # handed to the waiting worker, which re-raises it
                self.outcomes.put((None, exc))


class CallGuard:
    """Bounds every call of the clients it guards: network time per call, and cancellation.

    botocore's timeouts bound each socket read, not an answer that trickles in a byte at a
    time, and its retries multiply them. Each API call (`before-call`, once per call) gets
    `deadline_s` of network time, spent by its HTTP attempts together; waits for the rate
    limit and back-offs between attempts do not count, so a healthy but rate-limited call never
    runs out. Each attempt runs on the worker's sender thread while the worker waits, at most
    for what is left of the budget, or until `cancel` is set.

    Budgets and senders are per thread and per service: an STS call that refreshes credentials
    while a SageMaker request is being signed has its own.
    """

    def __init__(self, deadline_s: float, cancel: threading.Event) -> None:
        self.deadline_s = deadline_s
        self.cancel = cancel
        self._local = threading.local()
        self._senders: list[_Sender] = []
        self._lock = threading.Lock()

    def _calls(self) -> dict[str, list[Any]]:
        """service -> [budget left, sender or None] of this thread's current call."""
        calls: dict[str, list[Any]] | None = getattr(self._local, "calls", None)
        if calls is None:
            calls = self._local.calls = {}
        return calls

    def start_call(self, service: str) -> None:
        call = self._calls().setdefault(service, [self.deadline_s, None])
        call[0] = self.deadline_s
        self.check_call(service)

    def check_call(self, service: str) -> None:
        """Cancelled, or CallDeadlineExceeded, when the call must not go on (before a call, and
        between attempts instead of backing off)."""
        if self.cancel.is_set():
            raise Cancelled()
        call = self._calls().get(service)
        if call is not None and call[0] <= 0:
            raise CallDeadlineExceeded(
                f"no complete answer within the call deadline of {self.deadline_s:g} s"
            )

    def send(self, service: str, http_send: Callable[[Any], Any], request: Any) -> Any:
        self.check_call(service)
        call = self._calls().setdefault(service, [self.deadline_s, None])
        sender: _Sender | None = call[1]
        if sender is None:
            sender = call[1] = _Sender(http_send)
            with self._lock:
                self._senders.append(sender)
        started = time.monotonic()
        sender.requests.put(request)
        try:
            while True:
                left = call[0] - (time.monotonic() - started)
                try:
                    response, error = sender.outcomes.get(timeout=max(0.0, min(left, _POLL_S)))
                except queue.Empty:
                    if self.cancel.is_set() or left <= 0:
                        call[1] = None  # the sender is still busy with the abandoned send
                        sender.stop()
                        call[0] = 0.0
                        self.check_call(service)
                    continue
                if error is not None:
                    raise error
                return response
        finally:
            call[0] -= time.monotonic() - started

    def close(self) -> None:
        """End every sender thread (an abandoned one once its send is over)."""
        with self._lock:
            senders, self._senders = self._senders, []
        for sender in senders:
            sender.stop()


GUARDS: weakref.WeakKeyDictionary[Any, CallGuard] = weakref.WeakKeyDictionary()
"""Each client's guard, for waits between calls (`patiently`) that must end on cancellation."""


def guard_client(client: Any, guard: CallGuard) -> Any:
    """Put every call of a botocore `client` under `guard`; the client, for chaining."""
    # botocore offers no public hook around the HTTP send itself; its endpoint's session is
    # the one seam where a worker can stop waiting for an answer that never completes.
    service = client.meta.service_model.service_id.hyphenize()
    endpoint = client._endpoint
    endpoint.http_session = GuardedHttpSession(endpoint.http_session, guard, service)
    client.meta.events.register(f"before-call.{service}", lambda **_: guard.start_call(service))
    GUARDS[client] = guard
    return client


def close_client(client: Any) -> None:
    """End the sender threads of `client`'s guard (and of every client sharing it)."""
    guard = GUARDS.get(client)
    if guard is not None:
        guard.close()


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
