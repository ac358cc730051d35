"""The emulator under benchmark: in this process, or in a child process driven over a pipe.

Both handles expose the same commands (fill, change, faults, request counts, CPU time). The
child answers one JSON line per command line on stdin; run alone it is
``python -m benchmarks.emulator_proc``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict
from typing import Any

from pipeline.emulator import Emulator, EmulatorServer

from .catalogue import CatalogueSpec, change, fill


class Controller:
    """The commands, run against one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        serve = emulator.handle_request

        def counting(operation: str, body: bytes, region: str) -> tuple[int, dict[str, Any]]:
            status, payload = serve(operation, body, region)
            if status != 200:
                with self._lock:
                    self.errors[str(payload.get("__type"))] += 1
            return status, payload

        # The HTTP handler looks the method up on the instance: error replies get counted.
        emulator.handle_request = counting  # type: ignore[method-assign]

    def fill(self, spec: dict[str, Any]) -> list[int]:
        """Fill the catalogue, then exempt it from garbage collection: a full collection
        over a million versions would stall every request in flight for a second."""
        counts = fill(self.emulator, CatalogueSpec(**spec))
        gc.collect()
        gc.freeze()
        return counts

    def change(self, count: int, seed: int, advance_s: float) -> dict[str, int]:
        return change(self.emulator, count, seed, advance_s)

    def faults(self, latency_s: float, rate_limit_rps: float | None) -> None:
        self.emulator.faults.latency_s = latency_s
        self.emulator.faults.rate_limit_rps = rate_limit_rps

    def counts(self) -> dict[str, Any]:
        """Requests received per operation, ListImageVersions requests per image, and error
        replies per error code (throttling among them)."""
        requests = self.emulator.requests()
        per_image = Counter(
            params.get("ImageName") for op, params in requests if op == "ListImageVersions"
        )
        return {
            "operations": dict(Counter(op for op, _ in requests)),
            "per_image": {str(name): n for name, n in per_image.items()},
            "errors": self._errors(),
        }

    def _errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self.errors)

    def clear(self) -> None:
        self.emulator.clear_requests()
        with self._lock:
            self.errors.clear()

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

    def fill(self, spec: CatalogueSpec) -> list[int]:
        counts: list[int] = self.call("fill", spec=asdict(spec))
        return counts

    def change(self, count: int, seed: int, advance_s: float = 86_400.0) -> dict[str, int]:
        changed: dict[str, int] = self.call("change", count=count, seed=seed, advance_s=advance_s)
        return changed

    def faults(self, latency_s: float = 0.0, rate_limit_rps: float | None = None) -> None:
        self.call("faults", latency_s=latency_s, rate_limit_rps=rate_limit_rps)

    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = self.call("counts")
        return counts

    def clear(self) -> None:
        self.call("clear")

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
        self._controller = Controller(self._server.emulator)
        self.url = self._server.url

    def call(self, command: str, **args: Any) -> Any:
        return getattr(self._controller, command)(**args)

    def close(self) -> None:
        self._server.stop()


class ProcessEmulator(EmulatorHandle):
    """The emulator in a child process: its own interpreter, so its own GIL and core."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", __name__],
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
    with EmulatorServer() as server:
        controller = Controller(server.emulator)
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
