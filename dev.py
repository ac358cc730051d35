#!/usr/bin/env python3
"""Project tasks that need nothing but Python 3.11+ and pip.

usage: python3 dev.py TASK [ARGUMENTS...]
       python3 dev.py TASK --help     what TASK does and its options; sets nothing up

Every task first runs `uv sync` against uv.lock (exact versions): a no-op when .venv already
matches. uv is the version pyproject.toml pins: the `uv` on PATH when it is that version, else a
private copy that pip installs once under .tools/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
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

    With the dev extra, every package is compiled to bytecode (about 20 s once, 1 s after):
    the tests, faults and benchmarks start hundreds of processes, each of which would
    otherwise compile what it imports again wherever Python may not write its cache.
    """
    extras = ["--extra", "dev", "--compile-bytecode"] if dev else []
    keep = [] if exact else ["--inexact"]
    try:
        run(uv(), "sync", "--locked", "--python", sys.executable, *extras, *keep)
    except subprocess.CalledProcessError:
        sys.exit("could not set up .venv from uv.lock (if it is out of date: python3 dev.py lock)")


def demo(args: list[str]) -> None:
    """Set up .venv (runtime dependencies), then run the demo on the bundled emulator.

    usage: python3 dev.py demo [--data-dir DIR]

    Starts the project's SageMaker emulator on loopback and runs the Dagster job
    sync_image_versions against it on a temporary instance: a full sync, changes to the
    catalogue, an incremental sync, a reconciliation and a DuckDB query, printing what changed
    at each step. Then `.venv/bin/image-versions` is installed (see README's quick start).

    options:
      --data-dir DIR  dataset directory (default: a new temporary directory)
    """
    sync_venv(dev=False)
    run(BIN / "image-versions", "demo", *args)


def test(args: list[str]) -> None:
    """Set up .venv (exactly the lock, with the dev extra), then run ruff, mypy and pytest.

    usage: python3 dev.py test [PYTEST ARGUMENTS...]

    ruff check, ruff format --check, mypy (strict), then the test suite over the machine's
    cores (up to 4).

    arguments:
      PYTEST ARGUMENTS  passed to pytest: `-n 0` (one process), `-k EXPR`, `-m "not e2e"`,
                        tests/unit (docs/development.md: the lanes)
    """
    sync_venv(dev=True, exact=True)
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    # Over the machine's cores (up to 4): the suite waits on processes and sockets as much
    # as it computes. `python3 dev.py test -n 0` runs it in one process.
    run(BIN / "pytest", "-n", "auto", "--maxprocesses", "4", *args)


def lock(args: list[str]) -> None:
    """Re-resolve pyproject.toml into uv.lock (`uv lock`); .venv is left as it is.

    usage: python3 dev.py lock [UV LOCK ARGUMENTS...]

    Keeps every locked version that still fits pyproject.toml.

    arguments:
      UV LOCK ARGUMENTS  passed to `uv lock`: `--upgrade` takes the newest of everything,
                         `--upgrade-package NAME` of one package
    """
    run(uv(), "lock", "--python", sys.executable, *args)


def dev(args: list[str]) -> None:
    """Set up .venv (with the dev extra), then start the seeded emulator and `dagster dev`.

    usage: python3 dev.py dev [--aws]

    The emulator serves 40 images on 127.0.0.1:8765 and `dagster dev` its UI on
    http://127.0.0.1:3000, with DAGSTER_HOME in .dagster/ (a copy of this repository's
    dagster.yaml, and the instance's storage) and the data dir .dagster/emulator-data/.
    Ctrl-C stops both.

    options:
      --aws  no emulator: use your AWS environment (profile, region, or the sources file)
             and write to $IMAGE_VERSIONS_DATA_DIR, else ./data
    """
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
    """Set up .venv (with the dev extra), then run the long fault matrix: table + JSON.

    usage: python3 dev.py faults [--quick] [--only KEYS] [--out FILE]

    Kills, throttling, bad data and more, against real image-versions processes and the
    emulator, counting rows lost and duplicated (about ten minutes).

    options (those of `python -m tests.fault_matrix`):
      --quick      the test suite's trial counts
      --only KEYS  comma-separated row keys
      --out FILE   the JSON (default: benchmarks/results/faults.json)
    """
    sync_venv(dev=True)
    run(BIN / "python", "-m", "tests.fault_matrix", *args)


def bench(args: list[str]) -> None:
    """Set up .venv (with the dev extra), then run the benchmarks: table + JSON.

    usage: python3 dev.py bench [--quick] [--only B1,B2] [--size NAME=VALUE]... [--out FILE]

    options (those of `python -m benchmarks.run`):
      --quick            smaller sizes (under 2 minutes)
      --only B1,B2       comma-separated scenarios
      --size NAME=VALUE  override one workload size of benchmarks/harness.py (repeatable)
      --out FILE         the JSON (default: benchmarks/results/latest.json)
    """
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

HELP = frozenset({"-h", "--help"})


def overview() -> str:
    """The module's usage, and each task's first line."""
    tasks = (f"  {name:<7} {task_help(name).splitlines()[0]}" for name in TASKS)
    return f"{inspect.cleandoc(__doc__ or '')}\n\ntasks:\n" + "\n".join(tasks)


def task_help(name: str) -> str:
    """What a task does and its options: its docstring."""
    return inspect.cleandoc(TASKS[name].__doc__ or "")


def main(argv: list[str]) -> None:
    """Run the task `argv` names; with -h or --help among its arguments, print what it does
    instead, setting nothing up (the tools behind it have their own --help, in .venv/bin)."""
    if argv[:1] and argv[0] in HELP:
        print(overview())
        return
    if not argv or argv[0] not in TASKS:
        sys.exit(overview())
    name, args = argv[0], argv[1:]
    if HELP.intersection(args):
        print(task_help(name))
        return
    try:
        TASKS[name](args)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run on an older python3
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    main(sys.argv[1:])
