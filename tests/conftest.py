"""Shared fixtures: an isolated AWS environment, the emulator on a real socket, a data dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.emulator import Clock, Emulator, EmulatorServer
from pipeline.storage import DataDir
from tests.support import REGION, START


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No real AWS configuration leaks in: dummy keys, a fixed region, no profiles."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name == "IMAGE_VERSIONS_DATA_DIR":
            monkeypatch.delenv(name)
    empty = tmp_path_factory.mktemp("aws") / "none"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """An empty emulator, clock frozen at START, serving HTTP on a free loopback port."""
    with EmulatorServer(Emulator(clock=Clock(start=START))) as running:
        yield running


@pytest.fixture
def emulator(server: EmulatorServer) -> Emulator:
    return server.emulator


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data")
