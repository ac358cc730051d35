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

_POLL_S = 0.1


class Cancelled(Exception):
    """The run was asked to stop (SIGINT, SIGTERM): calls in flight are abandoned."""


class CallDeadlineExceeded(Exception):
    """One API call outlasted its total deadline (every attempt and back-off included)."""


class _Sender:
    """A daemon thread doing one worker's HTTP sends, so the worker can stop waiting for them.

    A send stuck on a server that trickles bytes cannot be interrupted; its worker abandons the
    sender at the call's deadline (or on cancellation) and takes a new one. A daemon thread
    never holds up the process's exit.
    """

    def __init__(self, send: Callable[[Any], Any]) -> None:
        self._send = send
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="image-versions-http", daemon=True).start()

    def _serve(self) -> None:
        while True:
            request = self.requests.get()
            try:
                self.outcomes.put((self._send(request), None))
            except BaseException as exc:  # handed to the waiting worker, which re-raises it
                self.outcomes.put((None, exc))


class CallGuard:
    """Bounds every call of one client: a total deadline per call, and cancellation.

    botocore's timeouts bound each socket read, not an answer that trickles in a byte at a
    time, and its retries multiply them. The deadline starts at `before-call` (once per API
    call, retries included); each HTTP attempt runs on the worker's sender thread while the
    worker waits, at most until the deadline or until `cancel` is set.
    """

    def __init__(self, deadline_s: float, cancel: threading.Event) -> None:
        self.deadline_s = deadline_s
        self.cancel = cancel
        self._local = threading.local()

    def start_call(self, **_: Any) -> None:
        self._check(time.monotonic() + self.deadline_s)
        self._local.deadline = time.monotonic() + self.deadline_s

    def _check(self, deadline: float) -> None:
        """Cancelled, or CallDeadlineExceeded, when the call must not go on. The worker's sender
        may still be busy with the abandoned send: the next call gets a new one."""
        if self.cancel.is_set():
            self._local.sender = None
            raise Cancelled()
        if time.monotonic() >= deadline:
            self._local.sender = None
            raise CallDeadlineExceeded(
                f"no complete answer within the call deadline of {self.deadline_s:g} s"
            )

    def check_call(self) -> None:
        """Between attempts: end the call instead of backing off when it must not go on."""
        self._check(getattr(self._local, "deadline", float("inf")))

    def send(self, http_send: Callable[[Any], Any], request: Any) -> Any:
        deadline = getattr(self._local, "deadline", time.monotonic() + self.deadline_s)
        self._check(deadline)
        sender = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = _Sender(http_send)
        sender.requests.put(request)
        while True:
            try:
                response, error = sender.outcomes.get(
                    timeout=max(0.0, min(deadline - time.monotonic(), _POLL_S))
                )
            except queue.Empty:
                self._check(deadline)
                continue
            if error is not None:
                raise error
            return response


GUARDS: weakref.WeakKeyDictionary[Any, CallGuard] = weakref.WeakKeyDictionary()
"""Each client's guard, for waits between calls (`patiently`) that must end on cancellation."""


def pause(call: Callable[..., Any], seconds: float) -> None:
    """Sleep between calls of `call`'s client; Cancelled as soon as its run is cancelled."""
    guard = GUARDS.get(getattr(call, "__self__", None))
    if guard is None:
        time.sleep(seconds)
    elif guard.cancel.wait(seconds):
        raise Cancelled()


class GuardedHttpSession:
    """botocore's HTTP session, each send made under a `CallGuard`."""

    def __init__(self, inner: Any, guard: CallGuard) -> None:
        self._inner = inner
        self._guard = guard

    def send(self, request: Any) -> Any:
        return self._guard.send(self._inner.send, request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
