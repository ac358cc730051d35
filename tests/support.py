"""Helpers shared by the tests: in-process and CLI syncs, the source's truth, the views' rows,
the Dagster job on a temporary instance, raw emulator calls checked against the botocore model."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.emulator import Emulator, EmulatorServer
from pipeline.extract import sync
from pipeline.model import ImageState, StateKey
from pipeline.run import SyncOptions, SyncReport
from pipeline.schema import to_ms
from pipeline.state import load_account_state
from pipeline.storage import DataDir

if TYPE_CHECKING:  # the Dagster layer loads only in the tests that run it
    import dagster as dg
    import pytest
    from botocore.exceptions import ClientError

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SYNC_OP = "sync_sagemaker_sources"
S3_LOCK_TTL_S = 2
"""The S3 lease of the tests' writers (tests/e2e/conftest.py): a lost lease is seen quickly."""


def run_sync(data_dir: DataDir, server: EmulatorServer, **options: Any) -> SyncReport:
    """One in-process sync of the emulator's default region."""
    source = SourceConfig("default", (options.pop("region", REGION),), endpoint_url=server.url)
    access = AccessSettings(max_rps=options.pop("max_rps", None))
    targets = build_targets(ProjectConfig(sources=(source,)), access)
    return sync(data_dir, targets, SyncOptions(**options))


def truth(emulator: Emulator, regions: tuple[str, ...] = (REGION,)) -> set[tuple[Any, ...]]:
    """The emulator's live versions, as the comparable tuples `live_rows` gives."""
    return {
        (
            region,
            v["ImageName"],
            v["Version"],
            v["ImageArn"],
            v["ImageVersionArn"],
            v["ImageVersionStatus"],
            v.get("FailureReason"),
            to_ms(v["CreationTime"]),
            to_ms(v["LastModifiedTime"]),
        )
        for region in regions
        for v in emulator.live_versions(region)
    }


def live_rows(data_dir: DataDir, regions: tuple[str, ...] = (REGION,)) -> list[tuple[Any, ...]]:
    """The `image_versions` view of some regions, through the warehouse file, as tuples."""
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        return connection.execute(
            "SELECT region, image_name, version, image_arn, image_version_arn, status, "
            "failure_reason, epoch_ms(creation_time), epoch_ms(last_modified_time) "
            "FROM image_versions WHERE list_contains(?, region)",
            [list(regions)],
        ).fetchall()


def stored_states(data_dir: DataDir) -> dict[StateKey, ImageState]:
    """Every account's committed state, read as a sync reads it (`load_account_state`)."""
    return {
        key: state
        for account in data_dir.account_keys()
        for key, state in load_account_state(data_dir, account).items()
    }


def history_duplicates(data_dir: DataDir) -> int:
    """States that appear more than once in `image_version_history` (must be 0)."""
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        row = connection.execute(
            "SELECT count(*) - count(DISTINCT (account_id, region, image_name, version, "
            "status, failure_reason, creation_time, last_modified_time, is_deleted)) "
            "FROM image_version_history"
        ).fetchone()
    assert row is not None
    return int(row[0])


def assert_converged(
    data_dir: DataDir, emulator: Emulator, regions: tuple[str, ...] = (REGION,)
) -> None:
    """Invariant 1: the view equals the source's live versions (in `regions`), no duplicate
    anywhere."""
    rows = live_rows(data_dir, regions)
    assert len(rows) == len(set(rows)), "duplicate live versions"
    assert set(rows) == truth(emulator, regions)
    assert history_duplicates(data_dir) == 0


FILE_PERMISSIONS_HOLD: tuple[str, ...] = (
    (
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
    )
    if os.geteuid() == 0
    else ()
)
"""A command prefix under which a child process obeys file permissions. Root (as CI runs)
reads any file through two capabilities: the child keeps its user, and so its access to the
interpreter and the data dir, but loses those."""


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    prefix: Sequence[str] = (),
    cwd: Path | None = None,
    stdin: str = "",
) -> CliResult:
    """`python -P -m pipeline ARGS` in a subprocess (the installed package, whatever the
    working directory holds), with the test's environment and `stdin`; `prefix` is a command
    that runs it (e.g. `FILE_PERMISSIONS_HOLD`)."""
    completed = subprocess.run(
        [*prefix, sys.executable, "-P", "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=stdin,
        cwd=cwd,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def foreign_packages(directory: Path) -> Path:
    """A directory with packages of its own named `assets` and `pipeline` (a Dagster repository
    has the first), neither of them importable: where users run the commands from."""
    for name in ("assets", "pipeline"):
        package = directory / name
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(f'raise ImportError("the user\'s own {name}")\n')
    return directory


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (S3, STS, Organizations...) on a free loopback port: its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


_KILLED_AT = (
    "import os, signal, sys\n"
    "from pipeline import committer, storage\n"
    "def kill(*args, **kwargs):\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "if sys.argv[1] == 'state':\n"
    "    committer.save_state = kill\n"
    "else:\n"
    "    storage.DataDir.end_commit = kill\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
KILL_INSTANTS = ("state", "journal")


def cli_killed_at(instant: str) -> list[str]:
    """The command (CLI arguments follow it) of a CLI that SIGKILLs itself at its first
    commit of data: at `state`, just before it saves the state that covers the files it has
    published; at `journal`, just after, before it drops the commit's journal. No delay after
    a log line can land a kill there reliably: the two steps are a millisecond apart."""
    assert instant in KILL_INSTANTS
    return [sys.executable, "-c", _KILLED_AT, instant]


_IMPORTS_REPORTED = (
    "import atexit, json, os, sys\n"
    "def report():\n"
    "    layers = sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'assets'})\n"
    "    with open(os.environ['IMPORTS_REPORT'], 'w') as out:\n"
    "        json.dump(layers, out)\n"
    "atexit.register(report)\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_cli_reporting_imports(
    report: Path, *args: str, timeout: float = 180, cwd: Path | None = None
) -> tuple[CliResult, list[str]]:
    """`run_cli`, and which of the Dagster layers (`dagster`, `assets`) the process imported."""
    completed = subprocess.run(
        [sys.executable, "-P", "-c", _IMPORTS_REPORTED, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "IMPORTS_REPORT": str(report)},
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    result = CliResult(completed.returncode, completed.stdout, completed.stderr)
    return result, json.loads(report.read_text())


@contextlib.contextmanager
def held_listings(emulator: Emulator, after: int = 0) -> Iterator[threading.Event]:
    """Every ListImageVersions call but the first `after` waits in `emulator` until the block
    ends: a sync started in the block is still running at its end, on a machine of any
    speed. The event yielded is set once a call is held (the sync then holds its target's
    lock, and has finished what it could)."""
    held, release = threading.Event(), threading.Event()
    passed = itertools.count()

    def hold(operation: str, params: dict[str, Any]) -> None:
        if operation == "ListImageVersions" and next(passed) >= after:
            held.set()
            release.wait()

    emulator.before_request = hold
    try:
        yield held
    finally:
        emulator.before_request = None
        release.set()


def kill_mid_run(
    launch: Callable[[], contextlib.AbstractContextManager[subprocess.Popen[Any]]],
    instant: float,
    attempts: int,
    ready: Callable[[subprocess.Popen[Any]], None] = lambda process: None,
) -> bool:
    """Start a run with `launch` (a Popen, or a context manager that yields one) and SIGKILL it
    `instant` seconds after `ready` returns.

    A run that finished before its instant (the machine was faster than when timed) is
    started again and killed at half the instant, so a trial is a real kill mid-run.
    Returns whether a kill landed within `attempts`.
    """
    for _ in range(attempts):
        with launch() as process:
            ready(process)
            time.sleep(instant)
            process.send_signal(signal.SIGKILL)
            if process.wait(timeout=30) == -signal.SIGKILL:
                return True
        instant /= 2
    return False


# --- the Dagster job ----------------------------------------------------------------------


def definitions(sources_file: Path, data_root: Path) -> dg.Definitions:
    """The code location's definitions for a sources file, writing under `data_root`."""
    from assets.definitions import build_definitions
    from assets.resources import DataDirResource, SageMakerResource
    from pipeline.config import load_config

    return build_definitions(
        load_config(str(sources_file)),
        SageMakerResource(config_path=str(sources_file)),
        DataDirResource(path=str(data_root)),
    )


def run_job(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[str],
    config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """The sync job over the partition range `keys[0]..keys[-1]`, in process."""
    from assets.schedules import JOB_NAME, RANGE_END, RANGE_START

    job = definitions.resolve_job_def(JOB_NAME)
    return job.execute_in_process(
        instance=instance,
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        run_config={"ops": {SYNC_OP: {"config": config}}} if config else None,
        raise_on_error=False,
    )


# --- raw emulator calls and the botocore model --------------------------------------------


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = excinfo.value.response["Error"]["Code"]
    return code


def raw_call(
    url: str, target: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST one request without botocore (no client-side validation or signing)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "X-Amz-Target": target,
            "Content-Type": "application/x-amz-json-1.1",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.load(error)


_UNICODE_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\d", r"\p{Z}": r"\s"}
"""The model's Unicode classes (TagKey, TagValue), which Python's re lacks, as its nearest
supersets."""


def assert_conforms(shape: Any, value: Any, path: str = "$") -> None:
    """Check a raw JSON value against a botocore shape: members, required, types, patterns."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        assert set(value) <= set(shape.members), f"{path}: {set(value) - set(shape.members)}"
        assert set(shape.required_members) <= set(value), path
        for name, item in value.items():
            assert_conforms(shape.members[name], item, f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            assert_conforms(shape.member, item, f"{path}[{index}]")
    elif kind == "string":
        assert isinstance(value, str), path
        assert not shape.enum or value in shape.enum, path
        pattern = shape.metadata.get("pattern")
        for java, python in _UNICODE_CLASSES.items():
            pattern = pattern and pattern.replace(java, python)
        assert pattern is None or re.fullmatch(pattern, value), f"{path}: {value!r} !~ {pattern}"
        assert shape.metadata.get("min", 0) <= len(value) <= shape.metadata.get("max", 1 << 30)
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), path
        assert value >= shape.metadata.get("min", value), path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    else:
        assert kind == "timestamp", path
        assert isinstance(value, int | float) and round(value, 3) == value, path


GOOD_SOURCE = "[sources.a]\nregions = ['us-east-1']\n"


def sources_file(directory: Path, text: str) -> Path:
    """`text` as the sources file `image-versions.toml` in `directory`."""
    path = directory / "image-versions.toml"
    path.write_text(text)
    return path
