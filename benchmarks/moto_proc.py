"""moto's server in a process of its own, playing STS and Organizations, and an organization
created in it.

An organization source's sync lists the accounts through Organizations and assumes the member
role in each through STS; the emulator asks the same STS which account an access key signs
for. moto checks neither signatures nor IAM policies by default, so any member role works.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import Self

from .catalogue import REGION
from .measured import cpu_seconds_of

START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """`python -m moto.server` on a free loopback port while the block runs."""

    def __init__(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "MOTO_CALL_RESET_API": "false"},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.close()
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self._process.pid)

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def create_organization(url: str, members: int) -> tuple[str, list[str]]:
    """An organization with `members` new ACTIVE accounts, made with the caller's (dummy)
    credentials, whose account becomes the management account; (its id, the members' ids)."""
    import boto3

    client = boto3.client("organizations", endpoint_url=url, region_name=REGION)
    organization = client.create_organization(FeatureSet="ALL")["Organization"]
    ids = [
        client.create_account(AccountName=f"member{n}", Email=f"member{n}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        for n in range(members)
    ]
    return str(organization["MasterAccountId"]), ids
