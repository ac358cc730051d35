"""The development environment: uv.lock holds one Dagster release, .venv holds what the lock
says, and dev.py runs the pinned uv, from PATH or its private copy, without installing it again."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import dev

ROOT = Path(__file__).resolve().parents[1]
# Released together, and pinned to each other's exact version.
DAGSTER_RELEASE = (
    "dagster",
    "dagster-dg-cli",
    "dagster-graphql",
    "dagster-pipes",
    "dagster-shared",
    "dagster-webserver",
)


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def fake_uv(path: Path, says: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{says}'\n")
    path.chmod(0o755)
    return path


def refuse_install(version: str, home: Path) -> None:
    raise AssertionError(f"dev.py installed uv {version} into {home} again")


def test_the_dagster_packages_are_locked_to_one_1_13_release() -> None:
    locked = locked_versions()
    releases = {locked[name] for name in DAGSTER_RELEASE}
    assert len(releases) == 1, releases
    assert releases.pop().startswith("1.13.")


def test_the_environment_holds_the_locked_dagster() -> None:
    locked = locked_versions()
    installed = {name: version(name) for name in DAGSTER_RELEASE}
    assert installed == {name: locked[name] for name in DAGSTER_RELEASE}, (
        "the environment is not the lock's: python3 dev.py test syncs it"
    )


def test_a_uv_of_the_pinned_version_on_path_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = fake_uv(tmp_path / "bin" / "uv", f"uv {dev.pinned_uv_version()} (x86_64)")
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setattr(dev, "TOOLS", tmp_path / "tools")
    monkeypatch.setattr(dev, "install_uv", refuse_install)
    assert dev.uv() == str(on_path)


def test_another_uv_on_path_gives_way_to_the_private_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = dev.pinned_uv_version()
    on_path = fake_uv(tmp_path / "bin" / "uv", "uv 0.1.0 (x86_64)")
    private = fake_uv(tmp_path / "tools" / f"uv-{pin}" / dev.SCRIPTS / "uv", f"uv {pin}")
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setattr(dev, "TOOLS", tmp_path / "tools")
    monkeypatch.setattr(dev, "install_uv", refuse_install)
    assert dev.uv() == str(private)
