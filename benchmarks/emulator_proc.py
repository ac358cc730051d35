"""The emulator under benchmark: in this process, or in a child process driven over a pipe.

Both handles expose the same commands (fill, change, faults, a refill of the rate-limit
buckets, request counts, CPU time). The
child answers one JSON line per command line on stdin; run alone it is
``python -m benchmarks.emulator_proc [--sts-endpoint-url URL ACCOUNT...]``: with STS, one
server stands for several accounts (the default one and each ACCOUNT), each with its own
catalogue and its own faults (so its own rate limit).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pipeline.emulator import THROTTLING, Emulator, EmulatorServer

from .catalogue import CatalogueSpec, change, fill


class Controller:
    """The commands, run against one server's emulators (one per account it serves)."""

    def __init__(self, server: EmulatorServer) -> None:
        self.emulator = server.emulator
        self.accounts = server.accounts
        self.errors: Counter[tuple[str, str]] = Counter()
        """Error replies per (account, error code)."""
        self.span: list[float] = []
        """Monotonic seconds when the first request since the last clear came, and when the
        last reply went."""
        self.replied = 0
        """Replies since the last clear, errors included (`progress`)."""
        self._lock = threading.Lock()
        for account, emulator in self.accounts.items():
            self._count_replies(account, emulator)

    def _count_replies(self, account: str, emulator: Emulator) -> None:
        serve = emulator.handle_request

        def counting(operation: str, body: bytes, region: str) -> tuple[int, dict[str, Any]]:
            came = time.monotonic()
            status, payload = serve(operation, body, region)
            went = time.monotonic()
            with self._lock:
                first, last = self.span or [came, went]
                self.span = [min(first, came), max(last, went)]
                self.replied += 1
                if status != 200:
                    self.errors[account, str(payload.get("__type"))] += 1
            return status, payload

        # The HTTP handler looks the method up on the instance: replies get counted.
        emulator.handle_request = counting  # type: ignore[method-assign]

    def fill(self, spec: dict[str, Any], account: str | None = None) -> list[int]:
        """Fill one account's catalogue (the default account's unless named), then exempt it
        from garbage collection: a full collection over a million versions would stall every
        request in flight for a second."""
        counts = fill(self.accounts[account] if account else self.emulator, CatalogueSpec(**spec))
        gc.collect()
        gc.freeze()
        return counts

    def change(self, count: int, seed: int, advance_s: float) -> dict[str, int]:
        return change(self.emulator, count, seed, advance_s)

    def faults(
        self,
        latency_s: float,
        rate_limit_rps: float | None,
        bucket_capacity: float | None = None,
        neighbour_rps: float | None = None,
        throttle_rate: float = 0.0,
    ) -> None:
        """The same faults for every account; each account keeps its own rate-limit bucket
        (and its own neighbour)."""
        for emulator in self.accounts.values():
            faults = emulator.faults
            faults.latency_s, faults.rate_limit_rps = latency_s, rate_limit_rps
            faults.bucket_capacity, faults.neighbour_rps = bucket_capacity, neighbour_rps
            faults.throttle_rate = throttle_rate

    def refill(self) -> None:
        """Every account's bucket full again from its next request, its neighbour counted
        from then: a run starts as if the account had been idle."""
        for emulator in self.accounts.values():
            emulator.faults.refill()

    def counts(self) -> dict[str, Any]:
        """Requests received per operation, ListImageVersions requests per image, error
        replies per error code (throttling among them) and the neighbours' requests (since
        their buckets' start), summed over accounts; and per account, its requests, error
        replies and throttling replies; and the seconds from the first request to the last
        reply."""
        served = {account: e.requests() for account, e in self.accounts.items()}
        every = [request for requests in served.values() for request in requests]
        per_image = Counter(
            params.get("ImageName") for op, params in every if op == "ListImageVersions"
        )
        errors: Counter[str] = Counter()
        errors_of: Counter[str] = Counter()
        throttled_of: Counter[str] = Counter()
        for (account, code), n in self._errors().items():
            errors[code] += n
            errors_of[account] += n
            throttled_of[account] += n if code == THROTTLING else 0
        neighbours = [e.faults for e in self.accounts.values()]
        return {
            "operations": dict(Counter(op for op, _ in every)),
            "per_image": {str(name): n for name, n in per_image.items()},
            "errors": dict(errors),
            "accounts": {
                account: {
                    "requests": len(requests),
                    "errors": errors_of[account],
                    "throttled": throttled_of[account],
                }
                for account, requests in served.items()
            },
            "span_seconds": self._span_seconds(),
            "neighbour": {
                "attempts": sum(f.neighbour_attempts for f in neighbours),
                "throttled": sum(f.neighbour_throttled for f in neighbours),
                "seconds": max(f.neighbour_seconds for f in neighbours),
            },
        }

    def progress(self) -> list[float]:
        """Replies since the last clear, and this process's CPU seconds: cheap enough to
        poll while a sync runs."""
        with self._lock:
            return [self.replied, time.process_time()]

    def _span_seconds(self) -> float:
        with self._lock:
            return self.span[1] - self.span[0] if self.span else 0.0

    def _errors(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.errors)

    def clear(self) -> None:
        for emulator in self.accounts.values():
            emulator.clear_requests()
        with self._lock:
            self.errors.clear()
            self.span = []
            self.replied = 0

    def cpu_seconds(self) -> float:
        return time.process_time()


class EmulatorHandle(ABC):
    """An emulator serving HTTP on loopback, with the benchmark's commands."""

    url: str

    @abstractmethod
    def call(self, command: str, **args: Any) -> Any:
        """Run one Controller command; returns its (JSON-able) result."""

    @abstractmethod
    def close(self) -> None:
        """Stop serving."""

    def fill(self, spec: CatalogueSpec, account: str | None = None) -> list[int]:
        counts: list[int] = self.call("fill", spec=asdict(spec), account=account)
        return counts

    def change(self, count: int, seed: int, advance_s: float = 86_400.0) -> dict[str, int]:
        changed: dict[str, int] = self.call("change", count=count, seed=seed, advance_s=advance_s)
        return changed

    def faults(
        self,
        latency_s: float = 0.0,
        rate_limit_rps: float | None = None,
        *,
        bucket_capacity: float | None = None,
        neighbour_rps: float | None = None,
        throttle_rate: float = 0.0,
    ) -> None:
        self.call(
            "faults",
            latency_s=latency_s,
            rate_limit_rps=rate_limit_rps,
            bucket_capacity=bucket_capacity,
            neighbour_rps=neighbour_rps,
            throttle_rate=throttle_rate,
        )

    def refill(self) -> None:
        self.call("refill")

    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = self.call("counts")
        return counts

    def clear(self) -> None:
        self.call("clear")

    def progress(self) -> tuple[int, float]:
        """(replies since the last clear, CPU seconds of the emulator's process)."""
        replied, cpu = self.call("progress")
        return int(replied), float(cpu)

    def cpu_seconds(self) -> float:
        return float(self.call("cpu_seconds"))

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class LocalEmulator(EmulatorHandle):
    """The emulator on a thread of this process (it shares this process's GIL)."""

    def __init__(self) -> None:
        self._server = EmulatorServer().start()
        self._controller = Controller(self._server)
        self.url = self._server.url

    def call(self, command: str, **args: Any) -> Any:
        return getattr(self._controller, command)(**args)

    def close(self) -> None:
        self._server.stop()


class ProcessEmulator(EmulatorHandle):
    """The emulator in a child process: its own interpreter, so its own GIL and core.

    With `sts_endpoint_url`, it also serves each of `accounts` (see the module's doc)."""

    def __init__(self, accounts: Sequence[str] = (), sts_endpoint_url: str | None = None) -> None:
        sts = [] if sts_endpoint_url is None else ["--sts-endpoint-url", sts_endpoint_url]
        self._child = subprocess.Popen(
            [sys.executable, "-m", __name__, *sts, *accounts],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = str(self._read()["url"])

    def _read(self) -> dict[str, Any]:
        assert self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, command: str, **args: Any) -> Any:
        assert self._child.stdin is not None
        self._child.stdin.write(json.dumps({"command": command, "args": args}) + "\n")
        self._child.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"emulator command {command} failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.close()
        self._child.wait(timeout=30)


def open_emulator(in_process: bool = False) -> EmulatorHandle:
    return LocalEmulator() if in_process else ProcessEmulator()


def _serve_commands() -> None:
    """The child: serve HTTP, answer commands until stdin closes."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__)
    parser.add_argument("--sts-endpoint-url", help="resolves access keys to accounts")
    parser.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="more accounts to serve")
    args = parser.parse_args()
    if args.accounts and not args.sts_endpoint_url:
        parser.error("serving more accounts needs --sts-endpoint-url")
    others = [Emulator(account_id=account) for account in args.accounts]
    with EmulatorServer(other_accounts=others, sts_endpoint_url=args.sts_endpoint_url) as server:
        controller = Controller(server)
        print(json.dumps({"url": server.url}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            try:
                result = getattr(controller, request["command"])(**request["args"])
                reply = {"result": result}
            except Exception as exc:  # reported to the parent, which raises it
                reply = {"error": repr(exc)}
            print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    _serve_commands()
