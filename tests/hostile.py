"""A hostile SageMaker: an HTTP proxy on loopback in front of the emulator that answers some
requests the way broken networks and servers do.

Each request is forwarded to the emulator unless `HostileProxy.plan(operation, params)` names
a misbehaviour for it: a body that is not the API's (a captive portal's HTML, `{}`), records
rewritten at the JSON level (wrong types, NaN, odd ARNs), a NextToken that never changes, an
answer trickled a byte at a time, silence, or a dropped connection. The process under test
is a real `image-versions` process talking HTTP to it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HTML_PAGE = b"<html><body><h1>Welcome to Hotel WiFi</h1>Please log in.</body></html>"
LOOP_TOKEN = "the-same-token-every-time"
_HOP_HEADERS = {"host", "connection", "content-length"}
Rewrite = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Misbehaviour:
    """What the proxy does instead of forwarding faithfully."""

    kind: str
    """body | rewrite | loop | trickle | silent | drop | delay"""
    body: bytes = b""
    content_type: str = "application/x-amz-json-1.1"
    rewrite: Rewrite | None = None
    """For `rewrite`: changes the decoded answer in place (NaN and Infinity survive)."""
    seconds: float = 0.0
    """For `trickle`: the pause between bytes; for `delay`: added before forwarding."""


def body(text: bytes, content_type: str = "text/html") -> Misbehaviour:
    return Misbehaviour("body", body=text, content_type=content_type)


def rewrite(change: Rewrite) -> Misbehaviour:
    return Misbehaviour("rewrite", rewrite=change)


Plan = Callable[[str, dict[str, Any]], Misbehaviour | None]


def aimed_at(operation: str, misbehaviour: Misbehaviour, image: str | None = None) -> Plan:
    """A plan: `misbehaviour` for every `operation` call (about `image` only, when given),
    a faithful answer to everything else."""

    def plan(called: str, params: dict[str, Any]) -> Misbehaviour | None:
        if called == operation and (image is None or params.get("ImageName", image) == image):
            return misbehaviour
        return None

    return plan


class HostileProxy:
    """The proxy on a free loopback port; `url` is its endpoint once started."""

    def __init__(self, upstream: str, plan: Plan | None = None) -> None:
        self.upstream = upstream
        self.plan: Plan = plan or (lambda operation, params: None)
        self.url = ""
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __enter__(self) -> HostileProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rpartition(".")[2]
                params = json.loads(raw or b"{}")
                proxy.requests.append((operation, params))
                misbehaviour = proxy.plan(operation, params)
                if misbehaviour is None:
                    self._answer(*proxy.forward(self.headers, raw))
                    return
                proxy.misbehave(self, misbehaviour, raw)

            def _answer(self, status: int, content_type: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                """A client that hangs up on a misbehaving answer is the point, not an error."""

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def forward(self, headers: Any, raw: bytes) -> tuple[int, str, bytes]:
        request = urllib.request.Request(
            self.upstream,
            data=raw,
            method="POST",
            headers={
                k: v
                for k, v in headers.items()
                if k.lower() not in {"host", "connection", "content-length"}
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read()

    def misbehave(self, handler: Any, misbehaviour: Misbehaviour, raw: bytes) -> None:
        kind = misbehaviour.kind
        if kind == "silent":
            self.stopping.wait(600)
            return
        if kind == "drop":
            handler.close_connection = True
            return
        if kind == "body":
            handler._answer(200, misbehaviour.content_type, misbehaviour.body)
            return
        if kind == "delay":
            time.sleep(misbehaviour.seconds)
        if kind == "loop":
            # The first page again and again, always with the same NextToken.
            request = json.loads(raw or b"{}")
            request.pop("NextToken", None)
            raw = json.dumps(request).encode()
        status, content_type, payload = self.forward(handler.headers, raw)
        if kind in {"rewrite", "loop"} and status == 200:
            answer = json.loads(payload)
            if kind == "loop":
                answer["NextToken"] = LOOP_TOKEN
            elif misbehaviour.rewrite is not None:
                misbehaviour.rewrite(answer)
            payload = json.dumps(answer).encode()
        if kind != "trickle":
            handler._answer(status, content_type, payload)
            return
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        for byte in payload:
            if self.stopping.wait(misbehaviour.seconds):
                return
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return
