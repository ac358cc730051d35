"""Dagster as a UI user meets it: `dagster dev` at the repository root, on a scratch instance
that holds the repository's dagster.yaml, with runs launched through the webserver's GraphQL
(what the UI's buttons send) and timed from the launch to their end.

B7 times runs this way; tests/e2e/test_dagster_dev.py drives the same server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

__all__ = ["BACKFILL_TAG", "DagsterDev", "RunTiming", "dagster_dev", "tags_of", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "image_versions"
REPOSITORY = "__repository__"
"""The repository name Dagster gives the `Definitions` of a code location."""
ASSET_JOB = "__ASSET_JOB"
"""The implicit job the UI launches for an asset or check selection."""
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
BACKFILL_TAG = "dagster/backfill"
POLL_S = 0.2
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1) -> T:
    """The first truthy value of `probe()` (an OSError counts as none) within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def tags_of(run: Mapping[str, Any]) -> dict[str, str]:
    """A run's tags (as `DagsterDev.runs` gives them) as a dict."""
    return {tag["key"]: tag["value"] for tag in run["tags"]}


@dataclass(frozen=True)
class RunTiming:
    """A run launched through GraphQL: its end status, the wall time from the launch until it
    was seen finished, and the run worker's own start-to-end time (Dagster's record)."""

    run_id: str
    status: str
    wall_seconds: float
    worker_seconds: float


@dataclass(frozen=True)
class DagsterDev:
    """A running `dagster dev` on loopback."""

    port: int

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]  # type: ignore[no-any-return]

    def asset_names(self) -> list[str]:
        nodes = self.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        return sorted("/".join(node["assetKey"]["path"]) for node in nodes)

    def launch_run(
        self,
        job: str,
        tags: Mapping[str, str] | None = None,
        checks: Mapping[str, list[str]] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> str:
        """Launch one run of `job` (or, with `checks`, asset name -> check names, of only those
        checks, as the UI's "Execute checks" does); returns its id."""
        selector: dict[str, Any] = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": job,
        }
        if checks is not None:
            selector["assetSelection"] = []
            selector["assetCheckSelection"] = [
                {"assetKey": {"path": [asset]}, "name": name}
                for asset, names in checks.items()
                for name in names
            ]
        params = {
            "selector": selector,
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {
                "tags": [{"key": key, "value": value} for key, value in (tags or {}).items()]
            },
        }
        launched = self.graphql(
            "mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {"
            " __typename ... on LaunchRunSuccess { run { runId } }"
            " ... on PythonError { message } ... on RunConfigValidationInvalid"
            " { errors { message } } } }",
            {"params": params},
        )["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun failed: {launched}")
        return str(launched["run"]["runId"])

    def run(self, run_id: str) -> dict[str, Any]:
        return self.graphql(  # type: ignore[no-any-return]
            "query($id: ID!) { runOrError(runId: $id) {"
            " ... on Run { status startTime endTime } } }",
            {"id": run_id},
        )["runOrError"]

    def timed_run(self, launch: Callable[[], str], timeout: float = 300) -> RunTiming:
        """Launch a run with `launch` and wait for its end, timing it as its user would."""
        started = time.perf_counter()
        run_id = launch()

        def finished() -> dict[str, Any] | None:
            found = self.run(run_id)
            return found if found["status"] in FINISHED else None

        run = wait_for(f"run {run_id}", finished, timeout, every=POLL_S)
        wall = time.perf_counter() - started
        worker = (run["endTime"] or 0) - (run["startTime"] or 0)
        return RunTiming(run_id, run["status"], wall, worker)

    def event_times(self, run_id: str) -> dict[str, float]:
        """When each of the run's events of a type last came (by GraphQL type name: e.g.
        RunStartingEvent when the queue handed it to the launcher, RunStartEvent when its
        process began executing), in seconds since the epoch."""
        events = self.graphql(
            "query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection"
            " { events { __typename ... on MessageEvent { timestamp } } } } }",
            {"id": run_id},
        )["logsForRun"]["events"]
        return {e["__typename"]: int(e["timestamp"]) / 1000 for e in events if e.get("timestamp")}

    def launched_at(self, run_id: str) -> float:
        """When the queue handed the run to the launcher (its RUN_STARTING event), in s."""
        return self.event_times(run_id)["RunStartingEvent"]

    def log_messages(self, run_id: str) -> list[str]:
        """The messages of the run's event log, in order."""
        events = self.graphql(
            "query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection"
            " { events { ... on MessageEvent { message } } } } }",
            {"id": run_id},
        )["logsForRun"]["events"]
        return [event["message"] for event in events if event.get("message")]

    def runs(self, tags: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Every run of the instance (with `tags`, those that carry them), newest first:
        status, start and end, tags."""
        selected = [{"key": key, "value": value} for key, value in (tags or {}).items()]
        return self.graphql(  # type: ignore[no-any-return]
            "query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {"
            " ... on Runs { results { runId status startTime endTime tags { key value } } } } }",
            {"tags": selected},
        )["runsOrError"]["results"]

    def finished_runs(
        self, count: int, tags: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]] | None:
        """The runs (with `tags`, those that carry them) once there are `count` and all have
        ended, else None."""
        runs = self.runs(tags)
        done = len(runs) == count and all(run["status"] in FINISHED for run in runs)
        return runs if done else None

    def launch_backfill(self, assets: Sequence[str], partitions: Sequence[str]) -> str:
        """Launch a backfill of `assets` over `partitions`, as the UI's "Materialize" of a
        partition selection does; returns its id (its runs carry the tag BACKFILL_TAG)."""
        params = {
            "assetSelection": [{"path": [asset]} for asset in assets],
            "partitionNames": list(partitions),
        }
        launched = self.graphql(
            "mutation($params: LaunchBackfillParams!) {"
            " launchPartitionBackfill(backfillParams: $params) { __typename"
            " ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }",
            {"params": params},
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill failed: {launched}")
        return str(launched["backfillId"])


@contextlib.contextmanager
def dagster_dev(
    scratch: Path, env: Mapping[str, str], log: TextIO, tool: str = "dagster"
) -> Iterator[DagsterDev]:
    """`dagster dev` (or `dg dev`: `tool` "dg") at the repository root, its DAGSTER_HOME a new
    directory under `scratch` holding a copy of the repository's dagster.yaml; stopped (its
    process group) on exit."""
    home = scratch / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    executable = Path(sys.executable).with_name(tool)
    process = subprocess.Popen(
        [str(executable), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env={**env, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(Path(sys.executable).parents[1])},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        server = DagsterDev(port)
        wait_for("the webserver", server.asset_names, timeout=120, every=0.5)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
