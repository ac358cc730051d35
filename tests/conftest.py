"""Shared fixtures (an isolated AWS environment, the emulator on a real socket, a data dir) and
the lanes: every test under tests/unit/ is marked `unit`, every test under tests/e2e/ `e2e`
(docs/development.md: running one lane)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.emulator import Clock, Emulator, EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from tests.support import OTHER_REGION, REGION, START

TESTS = Path(__file__).resolve().parent
LANES = ("unit", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its lane, the directory it lives in; a test outside both is an error,
    so that `-m "not e2e"` can never run a slow test by accident."""
    for item in items:
        path = item.path.resolve()
        lane = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if lane not in LANES:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit/ or tests/e2e/")
        item.add_marker(lane)


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


@pytest.fixture
def sources_file(tmp_path: Path, server: EmulatorServer) -> Path:
    """A sources file naming the seeded emulator in two regions."""
    seed_catalogue(server.emulator, seed=31, images=6, region=REGION)
    seed_catalogue(server.emulator, seed=32, images=4, region=OTHER_REGION)
    path = tmp_path / "image-versions.toml"
    path.write_text(
        f'[sources.emu]\nendpoint_url = "{server.url}"\nregions = ["{REGION}", "{OTHER_REGION}"]\n'
    )
    return path
