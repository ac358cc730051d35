"""The development environment: uv.lock holds one Dagster release, .venv holds what the lock
says, and dev.py runs the pinned uv, from PATH or its private copy, without installing it again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import dev

ROOT = Path(__file__).resolve().parents[2]
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


def fake_uv(path: Path, says: str, calls: Path | None = None) -> Path:
    """A `uv` that prints `says`, and appends its arguments to `calls` when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = f'echo "$@" >> {calls}\n' if calls else ""
    path.write_text(f"#!/bin/sh\n{record}echo '{says}'\n")
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


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize(
    "task", [[name] for name in dev.TASKS] + [["dev", "--aws"], ["test", "-k", "sync"]]
)
def test_a_tasks_help_says_what_it_does_and_sets_nothing_up(
    tmp_path: Path, task: list[str], flag: str
) -> None:
    """In a clone without .venv, with a uv on PATH that records being run: only the help."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("dev.py", "pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, clone / name)
    calls = tmp_path / "uv-calls"
    uv = fake_uv(tmp_path / "bin" / "uv", f"uv {dev.pinned_uv_version()}", calls)
    result = subprocess.run(
        [sys.executable, "dev.py", *task, flag],
        cwd=clone,
        env={**os.environ, "PATH": f"{uv.parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == dev.task_help(task[0]) + "\n"
    assert f"usage: python3 dev.py {task[0]}" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert not calls.exists(), calls.read_text()
    assert sorted(path.name for path in clone.iterdir()) == ["dev.py", "pyproject.toml", "uv.lock"]


def test_without_a_task_or_with_help_dev_py_lists_every_task() -> None:
    shown = subprocess.run(
        [sys.executable, "dev.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert shown.returncode == 0
    for name in dev.TASKS:
        assert f"  {name:<7} {dev.task_help(name).splitlines()[0]}" in shown.stdout
    missing = subprocess.run([sys.executable, "dev.py"], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr == shown.stdout


OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


@pytest.mark.parametrize(
    ("task", "tool"),
    [
        ("demo", ["-m", "pipeline", "demo"]),
        ("faults", ["-m", "tests.fault_matrix"]),
        ("bench", ["-m", "benchmarks.run"]),
    ],
)
def test_a_tasks_help_lists_the_options_of_the_tool_behind_it(task: str, tool: list[str]) -> None:
    shown = subprocess.run(
        [sys.executable, *tool, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert set(OPTION.findall(dev.task_help(task))) == set(OPTION.findall(shown.stdout)) - {
        "--help"
    }


def test_readme_says_how_to_run_image_versions_after_the_quick_start() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "`.venv/bin/image-versions`" in quick_start
    assert "`source .venv/bin/activate`" in quick_start
    # What it names is there: the environment dev.py made is the one the tests run in.
    command = Path(sys.executable).parent / "image-versions"
    shown = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith("image-versions "), shown.stderr


def test_a_release_wheel_holds_both_packages_and_reports_the_changelogs_version(
    tmp_path: Path,
) -> None:
    """README's install line for a release: the wheel `uv build` makes holds the core and the
    code location, and the version it reports is the one CHANGELOG.md gives last."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    released = re.findall(r"^## (\d+\.\d+\.\d+) ", changelog, flags=re.MULTILINE)
    assert released and released[0] == project["version"]
    wheel_name = f"sagemaker_image_versions-{project['version']}-py3-none-any.whl"
    assert f"pip install {wheel_name}" in (ROOT / "README.md").read_text()

    built = subprocess.run(
        [dev.uv(), "build", "--wheel", "--out-dir", str(tmp_path), "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = tmp_path / wheel_name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    for module in ("pipeline/cli.py", "pipeline/emulator/__init__.py", "assets/definitions.py"):
        assert module in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]

    venv = tmp_path / "venv"
    for command in (
        [dev.uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [dev.uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(venv), str(wheel)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    shown = subprocess.run(
        [python, "-P", "-c", "import pipeline; print(pipeline.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert shown.stdout.strip() == project["version"], shown.stderr
