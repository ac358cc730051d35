"""HTTP: the AWS JSON 1.1 server, :class:`EmulatorServer` and :func:`serve`."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from .accounts import CallerAccounts
from .clock import Clock
from .operations import Emulator
from .seeding import seed_catalogue
from .validation import ACCESS_DENIED, ApiError

__all__ = ["EmulatorServer", "serve"]

_TARGET_PREFIX = "SageMaker."
_CONTENT_TYPE = "application/x-amz-json-1.1"
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")


def _region_from(authorization: str | None, default: str) -> str:
    """The region of a SigV4 ``Authorization`` header's credential scope."""
    match = _CREDENTIAL_SCOPE.search(authorization or "")
    return match.group(1) if match else default


class _HTTPServer(ThreadingHTTPServer):
    """Threaded server (daemon threads) that can cut its open keep-alive connections."""

    def __init__(
        self,
        address: tuple[str, int],
        emulator: Emulator,
        accounts: Mapping[str, Emulator],
        caller_accounts: CallerAccounts | None,
    ) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator
        self.accounts = accounts
        self.caller_accounts = caller_accounts
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections the client dropped; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def emulator_for(self, authorization: str | None, token: str | None) -> Emulator | None:
        """The emulator of the request's account; None for an account this server lacks.

        The default emulator serves every request whose account cannot be resolved."""
        match = _ACCESS_KEY.search(authorization or "")
        if self.caller_accounts is None or match is None:
            return self.emulator
        account = self.caller_accounts.account_of(match.group(1), token)
        return self.emulator if account is None else self.accounts.get(account)

    def close_connections(self) -> None:
        """Shut every open connection so its handler thread finishes and closes it."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """AWS JSON 1.1 over HTTP/1.1 keep-alive: POST / with ``X-Amz-Target``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HTTPServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(_TARGET_PREFIX)  # another service's stays unknown
        authorization = self.headers.get("Authorization")
        emulator = self.server.emulator_for(authorization, self.headers.get("X-Amz-Security-Token"))
        if emulator is None:
            denied = ApiError(ACCESS_DENIED, f"The caller has no access to sagemaker:{operation}")
            self._reply(denied.status, denied.payload())
            return
        region = _region_from(authorization, emulator.default_region)
        status, payload = emulator.handle_request(operation, body, region)
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status != 200:
            self.send_header("x-amzn-ErrorType", payload["__type"])
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no line on stderr per request."""


class EmulatorServer:
    """The emulator on a real loopback socket, served by a daemon thread.

    With `other_accounts` and `sts_endpoint_url`, one server serves several accounts: a
    request goes to the emulator of the account that STS names for its access key, to
    `emulator` when STS cannot say, and is refused (AccessDeniedException) for an account
    that has no emulator here.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        other_accounts: Iterable[Emulator] = (),
        sts_endpoint_url: str | None = None,
    ) -> None:
        self.emulator = emulator if emulator is not None else Emulator()
        self.accounts = {e.account_id: e for e in (self.emulator, *other_accounts)}
        self.caller_accounts = (
            None if sts_endpoint_url is None else CallerAccounts(sts_endpoint_url)
        )
        self.url = ""
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        """Bind and start serving; :attr:`url` is valid afterwards."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        httpd = _HTTPServer(self._address, self.emulator, self.accounts, self.caller_accounts)
        host, port = httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._httpd = httpd
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the socket."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1", port: int = 8765, *, seed: int | None = 0, images: int = 12
) -> None:
    """Serve a (seeded, unless ``seed`` is None) emulator until interrupted; prints the URL.

    The seeded history starts 90 days ago (it spans about two months); afterwards the clock
    follows real time.
    """
    emulator = Emulator()
    if seed is not None:
        emulator.clock = Clock(datetime.now(UTC) - timedelta(days=90))
        seed_catalogue(emulator, seed=seed, images=images)
        emulator.clock = Clock()
    # The interrupt may come as soon as the URL is printed (the server already answers on its
    # own thread), so the whole serving block is inside the try.
    try:
        with EmulatorServer(emulator, host, port) as server:
            print(f"SageMaker emulator listening on {server.url}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
