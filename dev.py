#!/usr/bin/env python3
"""Project tasks that need nothing but Python 3.11+ and pip.

    python3 dev.py demo    set up .venv (runtime dependencies), then run the demo on the emulator
    python3 dev.py test    set up .venv (with the dev extra), then run ruff, mypy and pytest
    python3 dev.py dev     set up .venv (with the dev extra), then start the seeded emulator and
                           `dagster dev` (add --aws to use your AWS environment instead)
    python3 dev.py faults  the long fault matrix (kills, throttling, bad data...): table + JSON
    python3 dev.py bench   the benchmarks: table + JSON under benchmarks/results/
    python3 dev.py lock    re-resolve pyproject.toml into uv.lock (`uv lock`; pass e.g. --upgrade)

Every task first runs `uv sync` against uv.lock (exact versions): a no-op when .venv already
matches. uv is the version pyproject.toml pins: the `uv` on PATH when it is that version, else a
private copy that pip installs once under .tools/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SCRIPTS = "Scripts" if os.name == "nt" else "bin"
BIN = ROOT / ".venv" / SCRIPTS
TOOLS = ROOT / ".tools"


def run(*command: str | Path, **kwargs: object) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, **kwargs)  # type: ignore[call-overload]


def pinned_uv_version() -> str:
    """The exact version in pyproject.toml's `[tool.uv] required-version = "==X.Y.Z"`."""
    import tomllib  # not at the top: an older python3 must reach the version check first

    pin = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["required-version"]
    return str(pin).removeprefix("==")


def version_of(uv: str) -> str | None:
    """What `uv --version` says ("uv 0.13.9 (...)"), or None when it does not run."""
    try:
        words = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.split()
    except OSError:
        return None
    return words[1] if len(words) > 1 else None


def uv() -> str:
    """The pinned uv: from PATH when it is that version, else installed by pip under .tools/."""
    version = pinned_uv_version()
    on_path = shutil.which("uv")
    if on_path and version_of(on_path) == version:
        return on_path
    home = TOOLS / f"uv-{version}"
    binary = home / SCRIPTS / "uv"
    if not binary.exists():
        install_uv(version, home)
    return str(binary)


def install_uv(version: str, home: Path) -> None:
    # `pip install --target` needs no venv (so no ensurepip) and is allowed on an externally
    # managed system Python (PEP 668): it works as root or not, and writes only inside the repo.
    if importlib.util.find_spec("pip") is None:
        sys.exit(f"dev.py needs pip to install uv {version} (or put uv {version} on PATH)")
    print(f"installing uv {version} into {home.relative_to(ROOT)} (once)", flush=True)
    TOOLS.mkdir(exist_ok=True)
    for stale in TOOLS.glob("uv-*"):
        if stale != home:  # the copy of an earlier pin
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=TOOLS, prefix=".installing-") as partial:
        run(
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--root-user-action=ignore",
            "--target",
            partial,
            f"uv=={version}",
        )
        with contextlib.suppress(OSError):  # another dev.py, started at the same time, won
            Path(partial).rename(home)


def sync_venv(*, dev: bool, exact: bool = False) -> None:
    """Make .venv hold uv.lock's runtime dependencies (and the dev extra when `dev`).

    Not `exact`, packages the lock does not ask for stay: the demo after the tests keeps the dev
    extra instead of uninstalling it, so switching tasks costs nothing. The tests sync exactly,
    so they see what a clean clone sees.
    """
    extras = ["--extra", "dev"] if dev else []
    keep = [] if exact else ["--inexact"]
    try:
        run(uv(), "sync", "--locked", "--python", sys.executable, *extras, *keep)
    except subprocess.CalledProcessError:
        sys.exit("could not set up .venv from uv.lock (if it is out of date: python3 dev.py lock)")


def demo(args: list[str]) -> None:
    sync_venv(dev=False)
    run(BIN / "image-versions", "demo", *args)


def test(args: list[str]) -> None:
    sync_venv(dev=True, exact=True)
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    # Over the machine's cores (up to 4): the suite waits on processes and sockets as much
    # as it computes. `python3 dev.py test -n 0` runs it in one process.
    run(BIN / "pytest", "-n", "auto", "--maxprocesses", "4", *args)


def lock(args: list[str]) -> None:
    """`uv lock`: keeps locked versions that still fit; `--upgrade` takes the newest of all."""
    run(uv(), "lock", "--python", sys.executable, *args)


def dev(args: list[str]) -> None:
    """`dagster dev` on 127.0.0.1:3000 with this repository's dagster.yaml as the instance."""
    sync_venv(dev=True)
    storage = ROOT / ".dagster"
    storage.mkdir(exist_ok=True)
    # DAGSTER_HOME holds the instance's storage and its config: this repository's dagster.yaml.
    shutil.copyfile(ROOT / "dagster.yaml", storage / "dagster.yaml")
    env = dict(os.environ, DAGSTER_HOME=str(storage))
    emulator = None
    if "--aws" in args:
        env.setdefault("IMAGE_VERSIONS_DATA_DIR", str(ROOT / "data"))
    else:
        url = "http://127.0.0.1:8765"
        emulator = subprocess.Popen(
            [BIN / "image-versions", "emulator", "--port", "8765", "--images", "40"], cwd=ROOT
        )
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "IMAGE_VERSIONS_CONFIG"):
            env.pop(name, None)
        env.update(
            AWS_ENDPOINT_URL_SAGEMAKER=url,
            AWS_ACCESS_KEY_ID="emulator",
            AWS_SECRET_ACCESS_KEY="emulator",
            AWS_DEFAULT_REGION="us-east-1",
            IMAGE_VERSIONS_DATA_DIR=str(storage / "emulator-data"),
        )
    print(f"data dir: {env['IMAGE_VERSIONS_DATA_DIR']}; UI: http://127.0.0.1:3000", flush=True)
    try:
        subprocess.run(
            [BIN / "dagster", "dev", "-h", "127.0.0.1", "-p", "3000"],
            cwd=ROOT,
            env=env,
            check=False,
        )
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait()


def faults(args: list[str]) -> None:
    sync_venv(dev=True)
    run(BIN / "python", "-m", "tests.fault_matrix", *args)


def bench(args: list[str]) -> None:
    sync_venv(dev=True)
    run(BIN / "python", "-m", "benchmarks.run", *args)


TASKS = {
    "demo": demo,
    "test": test,
    "dev": dev,
    "faults": faults,
    "bench": bench,
    "lock": lock,
}

if __name__ == "__main__":
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run on an older python3
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    try:
        TASKS[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
