"""The production shape of deploy/ on this machine: a PostgreSQL server of its own, the code
location's gRPC code server (`dagster code-server start`), `dagster-webserver` and
`dagster-daemon run`, each a process of its own, sharing a DAGSTER_HOME that holds
deploy/dagster.yaml as it is (its storage, queue and launcher).

B7's launch times (`b7_launch.py`) and tests/e2e/test_deploy.py drive it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from .dagster_ui import LOCATION, ROOT, DagsterDev, free_port, wait_for

__all__ = [
    "Deployment",
    "Postgres",
    "Processes",
    "deployment",
    "postgres",
    "postgres_binaries",
    "processes",
]

DEPLOY = ROOT / "deploy"
UNPRIVILEGED_UID = 65534
"""`nobody`: PostgreSQL refuses to run as root, which CI is."""
STOP_SECONDS = 20


def postgres_binaries() -> Path | None:
    """The directory holding `initdb` and `postgres` (on PATH, or a Debian-style install)."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    return None


@dataclass(frozen=True)
class Postgres:
    """A running server on 127.0.0.1, and the environment deploy/dagster.yaml reads it from."""

    port: int
    password: str
    database: str = "dagster"
    user: str = "dagster"

    def environment(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self, database: str) -> Any:
        """A psycopg2 connection to `database`, or None while the server cannot take one."""
        import psycopg2

        try:
            return psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=database,
                connect_timeout=5,
            )
        except psycopg2.OperationalError:
            return None


def _as_unprivileged(command: Sequence[str]) -> list[str]:
    """`command` as `nobody` when this process is root (setpriv execs it: no extra parent)."""
    if os.geteuid() != 0:
        return list(command)
    ids = str(UNPRIVILEGED_UID)
    return ["setpriv", f"--reuid={ids}", f"--regid={ids}", "--clear-groups", *command]


def _init_cluster(binaries: Path, root: Path, password: str) -> Path:
    """A new cluster under `root` (owned by the server's user): password logins over TCP."""
    password_file = root / "password"
    password_file.write_text(password)
    data = root / "data"
    if os.geteuid() == 0:
        os.chown(root, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        os.chown(password_file, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    subprocess.run(
        _as_unprivileged(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "dagster",
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return data


@contextlib.contextmanager
def postgres(binaries: Path, log: TextIO) -> Iterator[Postgres]:
    """A PostgreSQL server in a new temporary directory, listening on a free loopback port,
    with an empty database `dagster`; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="image-versions-pg-"))
    server = Postgres(port=free_port(), password=secrets.token_urlsafe(16))
    try:
        data = _init_cluster(binaries, root, server.password)
        command = [str(binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1"]
        command += ["-p", str(server.port), "-k", str(root), "-c", "fsync=off"]
        with processes(log) as server_process:
            server_process.start(_as_unprivileged(command), os.environ, signal.SIGINT)
            admin = wait_for("PostgreSQL", lambda: server.connect("postgres"), 60, every=0.2)
            with contextlib.closing(admin):
                admin.autocommit = True
                admin.cursor().execute(f"CREATE DATABASE {server.database}")
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Processes:
    """Commands started in sessions of their own, their output to one log; `stop` ends them
    together: each whole process group is sent its stop signal, then SIGKILL once
    STOP_SECONDS have passed (a code server's runs, postgres' backends end too)."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self._started: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []

    def start(
        self, command: Sequence[str], env: Mapping[str, str], stop: signal.Signals = signal.SIGTERM
    ) -> None:
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=dict(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._started.append((process, stop))

    def _signal_all(self, which: signal.Signals | None = None) -> None:
        for process, stop in self._started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, which or stop)

    def stop(self) -> None:
        self._signal_all()
        deadline = time.monotonic() + STOP_SECONDS
        for process, _ in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        self._signal_all(signal.SIGKILL)
        for process, _ in self._started:
            process.wait(timeout=STOP_SECONDS)


@contextlib.contextmanager
def processes(log: TextIO) -> Iterator[Processes]:
    """Processes that are all stopped on exit, whatever happened."""
    started = Processes(log)
    try:
        yield started
    finally:
        started.stop()


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class Deployment:
    """The running deployment: its webserver (GraphQL) and how to start its daemon."""

    webserver: DagsterDev
    env: dict[str, str]
    processes: Processes

    def start_daemon(self) -> None:
        """`dagster-daemon run`: the queue, the backfills, the schedules and the monitoring.
        Its first pass over backfills comes at its start, its next ones every 30 s."""
        workspace = str(DEPLOY / "workspace.yaml")
        self.processes.start([_tool("dagster-daemon"), "run", "-w", workspace], self.env)


@contextlib.contextmanager
def deployment(
    scratch: Path,
    env: Mapping[str, str],
    database: Postgres,
    log: TextIO,
    *,
    daemon: bool = True,
    instance: Mapping[str, Any] | None = None,
    code_env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """The code server, the webserver and (with `daemon`; else `start_daemon` later) the
    daemon, with `env` (the code location's settings) and a DAGSTER_HOME under `scratch` holding
    deploy/dagster.yaml (its top-level sections replaced by those of `instance`, if given);
    `code_env` is added to the code server's environment (its runs' too). Every process is
    stopped on exit."""
    home = scratch / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    if instance:
        deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
        (home / "dagster.yaml").write_text(yaml.safe_dump({**deployed, **instance}))
    code_port, web_port = free_port(), free_port()
    full_env = {
        **env,
        **database.environment(),
        "DAGSTER_HOME": str(home),
        "IMAGE_VERSIONS_CODE_SERVER_HOST": "127.0.0.1",
        "IMAGE_VERSIONS_CODE_SERVER_PORT": str(code_port),
    }
    code_server = [_tool("dagster"), "code-server", "start", "-m", "assets.definitions"]
    code_server += ["--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(code_port)]
    webserver = [_tool("dagster-webserver"), "-w", str(DEPLOY / "workspace.yaml")]
    webserver += ["-h", "127.0.0.1", "-p", str(web_port)]
    with processes(log) as started:
        started.start(code_server, {**full_env, **(code_env or {})})
        started.start(webserver, full_env)
        running = Deployment(DagsterDev(web_port), full_env, started)
        # The webserver lists the assets once it has loaded them from the code server.
        wait_for("the code location", running.webserver.asset_names, timeout=120, every=0.5)
        if daemon:
            running.start_daemon()
        yield running
