#!/usr/bin/env python3
"""Project tasks that need nothing but Python 3.11+ and pip.

    python3 dev.py demo    set up .venv if needed, then run the demo on the bundled emulator
    python3 dev.py test    set up .venv if needed, then run ruff, mypy and pytest
    python3 dev.py dev     set up .venv if needed, then start the seeded emulator and `dagster dev`
                           (add --aws to use your AWS environment instead of the emulator)
    python3 dev.py faults  the long fault matrix (kills, throttling, bad data...): table + JSON
    python3 dev.py bench   the benchmarks: table + JSON under benchmarks/results/
    python3 dev.py lock    re-resolve dependencies and rewrite requirements.lock

The virtual environment is installed from requirements.lock (exact versions), and reinstalled
whenever the lock file or pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".installed-from"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def run(*command: str | Path, **kwargs: object) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, **kwargs)  # type: ignore[call-overload]


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run on an older python3
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV.name}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == fingerprint():
        return
    pip = [BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, "-r", LOCK)
    run(*pip, "--no-deps", "-e", ".")
    STAMP.write_text(fingerprint())


def demo(args: list[str]) -> None:
    ensure_venv()
    run(BIN / "image-versions", "demo", *args)


def test(args: list[str]) -> None:
    ensure_venv()
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    run(BIN / "pytest", *args)


def lock(_: list[str]) -> None:
    """Resolve pyproject's dependencies (with the dev extra) in a scratch venv; pin them all."""
    with tempfile.TemporaryDirectory() as scratch:
        venv.EnvBuilder(with_pip=True).create(scratch)
        python = Path(scratch) / "bin" / "python"
        run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", ".[dev]")
        frozen = subprocess.run(
            [python, "-m", "pip", "freeze", "--exclude", "sagemaker-image-versions"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    header = "# Exact versions for reproducible installs. Regenerate with: python3 dev.py lock\n"
    LOCK.write_text(header + frozen)
    print(f"wrote {LOCK.name}: {len(frozen.splitlines())} packages")


def dev(args: list[str]) -> None:
    """`dagster dev` on 127.0.0.1:3000 with this repository's dagster.yaml as the instance."""
    ensure_venv()
    storage = ROOT / ".dagster"
    storage.mkdir(exist_ok=True)
    env = dict(os.environ, DAGSTER_HOME=str(ROOT), DAGSTER_STORAGE_DIR=str(storage))
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
    ensure_venv()
    run(BIN / "python", "-m", "tests.fault_matrix", *args)


def bench(args: list[str]) -> None:
    ensure_venv()
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
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    try:
        TASKS[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
