"""B7 launch: how long a run launched through the webserver waits before it starts, on the
production shape of deploy/ (PostgreSQL, the code location's gRPC code server, webserver,
daemon: `dagster_deploy.py`), for a run launched from the UI (one partition) and for the runs
of a fanned-out backfill (one run per partition).

    python -m benchmarks.b7_launch [--partitions 4] [--repeats 3] [--out FILE]

Each variant is a deployment of its own, before and after a cut that deploy/ makes:

- `no bytecode`: the code server's processes (so each run's) find no compiled bytecode and
  may write none, as in an image whose dependencies were installed without
  UV_COMPILE_BYTECODE and that runs as a non-root user: every run compiles what it imports.
- `queue defaults`: Dagster's QueuedRunCoordinator as it comes (a pass every 5 s, one launch
  after another) instead of deploy/dagster.yaml's (every second, launches in threads).
- `deploy/`: the files as they are.

A run is timed from the GraphQL launch to its RUN_START event (its process has loaded the code
location and begins executing), split at RUN_STARTING (the queue handed it to the launcher).
A backfill's runs are created by the daemon's pass over backfills, which comes every 30 s (not
configurable); the daemon is started right after the launch so that its first pass takes the
backfill, and the times from launch include that start. Prints a table and writes every raw
time as JSON (default benchmarks/results/b7_launch.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.emulator import Emulator, EmulatorServer, seed_catalogue

from .dagster_deploy import Deployment, deployment, postgres, postgres_binaries
from .dagster_ui import BACKFILL_TAG, POLL_S, DagsterDev, wait_for
from .harness import INFO, Context, Row, Sizes, isolate_aws_env, median, print_table

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "ap-south-1", "eu-central-1", "ca-central-1")
IMAGES = 10
SYNC_ASSETS = ("image_versions", "sagemaker_images")
JOB = "sync_image_versions"
PARTITION_TAG = "dagster/partition"
RUN_TIMEOUT_S = 300


@dataclass(frozen=True)
class Variant:
    name: str
    instance: Mapping[str, Any] = field(default_factory=dict)
    """dagster.yaml sections that replace deploy/dagster.yaml's."""
    code_env: Mapping[str, str] = field(default_factory=dict)
    """Added to the code server's environment; "{scratch}" is the variant's directory."""


VARIANTS = (
    Variant(
        "no bytecode",
        code_env={"PYTHONPYCACHEPREFIX": "{scratch}/no-bytecode", "PYTHONDONTWRITEBYTECODE": "1"},
    ),
    Variant(
        "queue defaults",
        instance={"run_coordinator": {"module": "dagster", "class": "QueuedRunCoordinator"}},
    ),
    Variant("deploy/"),
)


def run_times(webserver: DagsterDev, run_id: str, launched: float) -> dict[str, float]:
    """Seconds from `launched` (epoch seconds) to the run's queueing, hand-over and start."""
    events = webserver.event_times(run_id)
    return {
        "queued": events["RunEnqueuedEvent"] - launched,
        "starting": events["RunStartingEvent"] - launched,
        "start": events["RunStartEvent"] - launched,
    }


def time_backfill(deployed: Deployment, partitions: list[str]) -> list[dict[str, Any]]:
    """A backfill of the sync assets over `partitions` (one run each), launched before the
    daemon starts; each run's times from the launch."""
    webserver = deployed.webserver
    launched = time.time()
    backfill = webserver.launch_backfill(SYNC_ASSETS, partitions)
    deployed.start_daemon()
    runs = wait_for(
        "the backfill's runs",
        lambda: webserver.finished_runs(len(partitions), {BACKFILL_TAG: backfill}),
        RUN_TIMEOUT_S,
        every=POLL_S,
    )
    return [
        run_times(webserver, run["runId"], launched) | {"success": run["status"] == "SUCCESS"}
        for run in runs
    ]


def time_ui_run(webserver: DagsterDev, partition: str) -> dict[str, Any]:
    """One run of the job for `partition`, as the UI's "Materialize" launches it."""
    launched = time.time()
    timing = webserver.timed_run(lambda: webserver.launch_run(JOB, {PARTITION_TAG: partition}))
    return run_times(webserver, timing.run_id, launched) | {"success": timing.status == "SUCCESS"}


def measure(variant: Variant, scratch: Path, partitions: int, repeats: int) -> dict[str, Any]:
    """One deployment with `variant`: a backfill over `partitions` sources, then `repeats`
    UI-launched runs of one partition."""
    scratch.mkdir(parents=True)
    code_env = {key: value.format(scratch=scratch) for key, value in variant.code_env.items()}
    regions = REGIONS[:partitions]
    with EmulatorServer(Emulator()) as server, contextlib.ExitStack() as stack:
        for seed, region in enumerate(regions):
            seed_catalogue(server.emulator, seed=seed, images=IMAGES, region=region)
        sources = scratch / "image-versions.toml"
        listed = ", ".join(f'"{region}"' for region in regions)
        sources.write_text(f'[sources.emu]\nendpoint_url = "{server.url}"\nregions = [{listed}]\n')
        env = {
            **os.environ,
            "IMAGE_VERSIONS_CONFIG": str(sources),
            "IMAGE_VERSIONS_DATA_DIR": str(scratch / "data"),
            "IMAGE_VERSIONS_PARTITIONS_PER_RUN": "1",
        }
        log = stack.enter_context((scratch / "deploy.log").open("w"))
        binaries = postgres_binaries()
        if binaries is None:
            raise RuntimeError("B7 launch needs PostgreSQL's server binaries (initdb, postgres)")
        database = stack.enter_context(postgres(binaries, log))
        deployed = stack.enter_context(
            deployment(
                scratch,
                env,
                database,
                log,
                daemon=False,
                instance=variant.instance,
                code_env=code_env,
            )
        )
        keys = [f"emu/{region}" for region in regions]
        backfill = time_backfill(deployed, keys)
        ui_runs = [time_ui_run(deployed.webserver, keys[0]) for _ in range(repeats)]
    return {"variant": variant.name, "backfill": backfill, "ui": ui_runs}


def rows_of(result: Mapping[str, Any]) -> list[Row]:
    """Two rows: the UI-launched run, the backfill's runs."""
    ui, backfill = result["ui"], result["backfill"]
    ok = all(run["success"] for run in [*ui, *backfill])
    first_pass = min(run["queued"] for run in backfill)
    starts = sorted(run["start"] for run in backfill)

    def split(runs: list[dict[str, float]]) -> str:
        queue = median([run["starting"] - run["queued"] for run in runs])
        process = median([run["start"] - run["starting"] for run in runs])
        return f"queue {queue:.2f} s, run process {process:.2f} s"

    return [
        Row(
            "B7",
            f"{result['variant']}: UI run, launch to start",
            f"{median([run['start'] for run in ui]):.2f} s",
            "-",
            "report",
            INFO,
            f"median of {len(ui)}; {split(ui)}; all succeeded: {ok}",
        ),
        Row(
            "B7",
            f"{result['variant']}: backfill of {len(backfill)}, launch to each start",
            f"{median(starts):.2f} s",
            "-",
            "report",
            INFO,
            f"last {starts[-1]:.2f} s; first run queued {first_pass:.2f} s after the launch"
            f" (daemon start); {split(backfill)}",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b7_launch", description=__doc__)
    parser.add_argument("--partitions", type=int, default=4, choices=range(1, len(REGIONS) + 1))
    parser.add_argument("--repeats", type=int, default=3, help="UI-launched runs per variant")
    parser.add_argument(
        "--only", help=f"comma-separated variants of: {', '.join(v.name for v in VARIANTS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/b7_launch.json"))
    args = parser.parse_args()
    wanted = {name.strip() for name in args.only.split(",")} if args.only else None
    ctx = Context.create(Sizes())
    isolate_aws_env(ctx.scratch)
    results = []
    try:
        for variant in VARIANTS:
            if wanted is None or variant.name in wanted:
                print(f"running {variant.name} ...", file=sys.stderr, flush=True)
                scratch = ctx.fresh_dir(variant.name.replace("/", "").replace(" ", "-"))
                results.append(measure(variant, scratch, args.partitions, args.repeats))
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    print_table([row for result in results for row in rows_of(result)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"partitions": args.partitions, "runs": results}, indent=1))
    print(f"raw results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
