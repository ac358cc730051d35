"""The fault matrix's Dagster rows: the job `sync_image_versions` in a real process of its own
against the emulator, killed mid-run, or over one good and one denied partition.

`python -m tests.fault_dagster SOURCES DATA INSTANCE KEY...` is that process: it runs the job
over the partitions KEY... on the instance kept in the directory INSTANCE, and prints one JSON
line: whether the run succeeded, and each partition's status per synced asset.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.emulator import Faults
from tests.fault_harness import Harness, Row, Run, harness, read_until
from tests.support import OTHER_REGION, REGION

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "f"
SYNCED_ASSETS = ("sagemaker_images", "image_versions")
STARTING = "starting the job"
"""What the job's process writes on stderr once Dagster is loaded, right before the run."""
JOB_TIMEOUT_S = 300


def _sources(h: Harness, regions: Sequence[str]) -> Path:
    path = h.workdir / "image-versions.toml"
    listed = ", ".join(f'"{region}"' for region in regions)
    path.write_text(f'[sources.{SOURCE}]\nregions = [{listed}]\nendpoint_url = "{h.endpoint}"\n')
    return path


def _args(h: Harness, sources: Path, instance: Path, keys: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.fault_dagster",
        str(sources),
        str(h.data.root),
        str(instance),
        *keys,
    ]


@contextmanager
def _job_started(
    h: Harness, sources: Path, instance: Path, keys: Sequence[str]
) -> Iterator[subprocess.Popen[str]]:
    """The job's process, once Dagster is loaded and the run is starting; SIGKILLed at the
    end of the block."""
    with subprocess.Popen(
        _args(h, sources, instance, keys),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=h.env,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    ) as process:
        try:
            read_until(process, STARTING)
            yield process
        finally:
            process.kill()


def _job(h: Harness, sources: Path, instance: Path, keys: Sequence[str]) -> tuple[Run, Any]:
    """The job's process run to its end: (how it ended, its JSON line or None)."""
    done = subprocess.run(
        _args(h, sources, instance, keys),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        env=h.env,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    outcome = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return Run(done.returncode, done.stdout, done.stderr), outcome


# ------------------------------------------------------------------ the rows


def sigkill_dagster(trials: int) -> Row:
    """SIGKILL of a process running the Dagster job, at random instants of its run, then a
    CLI re-run."""
    results = []
    with harness(2) as h:
        h.seed(images=30)
        sources = _sources(h, [REGION])
        for index in range(trials):
            h.mutate(6)
            with _job_started(h, sources, h.workdir / "dagster", [f"{SOURCE}/{REGION}"]) as job:
                instant = h.rng.uniform(0.0, 1.5)
                time.sleep(instant)  # the fault's random instant, not a wait for something
                killed = job.poll() is None
            run = h.sync()
            results.append(h.trial(run, note=f"{index}: at {instant:.2f} s, killed={killed}"))
    return Row("SIGKILL during a Dagster run", results)


def partial_failure(trials: int) -> Row:
    """A run over a good and a denied partition: it fails, only the good partition is
    materialized and the denied one is failed; a run of that one alone, once the source lets
    us in, materializes it. Any other status is one more row lost."""
    results = []
    good, denied = f"{SOURCE}/{REGION}", f"{SOURCE}/{OTHER_REGION}"
    regions = (REGION, OTHER_REGION)
    with harness(17) as h:
        for region in regions:
            h.seed(images=6, region=region)
        sources = _sources(h, regions)
        for index in range(trials):
            for region in regions:
                h.mutate(3, region=region)
            instance = h.workdir / f"dagster-{index}"  # each trial's statuses start empty
            h.emulator.faults.denied_regions = frozenset({OTHER_REGION})
            run, first = _job(h, sources, instance, [good, denied])
            h.emulator.faults = Faults()
            retry_run, retry = _job(h, sources, instance, [denied])
            wrong = _wrong_statuses(
                first, False, {good: "MATERIALIZED", denied: "FAILED"}
            ) + _wrong_statuses(retry, True, {good: "MATERIALIZED", denied: "MATERIALIZED"})
            trial = h.trial(run, regions, note=f"retried alone: exit {retry_run.code}")
            trial.lost += len(wrong)
            if wrong:
                trial.note += f"; wrong: {wrong}"
            results.append(trial)
    return Row(
        "Dagster run over a good and a denied partition",
        results,
        refusal="the run fails; only the good partition is materialized, the denied one is "
        "failed and materializes when retried alone",
    )


def _wrong_statuses(outcome: Any, success: bool, expected: dict[str, str]) -> list[str]:
    """What differs from a run that ended with `success` and left each asset's partitions in
    the `expected` statuses."""
    if outcome is None:
        return ["no outcome printed"]
    wrong = [] if outcome["success"] is success else [f"success={outcome['success']}"]
    for asset in SYNCED_ASSETS:
        found = {key: outcome["status"][asset].get(key) for key in expected}
        if found != expected:
            wrong.append(f"{asset}: {found}")
    return wrong


DAGSTER_MATRIX: list[tuple[str, Callable[[int], Row], int, int]] = [
    # key, factory, quick trials, full trials
    ("sigkill_dagster", sigkill_dagster, 1, 10),
    ("dagster_partial", partial_failure, 1, 2),
]


# ------------------------------------------------------------------ the job's process


def main(argv: Sequence[str]) -> int:
    import dagster as dg

    from assets.definitions import build_definitions
    from assets.resources import DataDirResource, SageMakerResource
    from assets.schedules import JOB_NAME, range_tags
    from pipeline.config import load_config

    sources, data, home, *keys = argv
    definitions = build_definitions(
        load_config(sources),
        SageMakerResource(config_path=sources),
        DataDirResource(path=data),
    )
    job = definitions.resolve_job_def(JOB_NAME)
    partitions = job.partitions_def
    assert partitions is not None
    Path(home).mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.local_temp(tempdir=home) as instance:
        print(STARTING, file=sys.stderr, flush=True)
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(keys),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        status: dict[str, dict[str, str | None]] = {}
        for asset in SYNCED_ASSETS:
            found = instance.get_status_by_partition(
                dg.AssetKey(asset), partitions.get_partition_keys(), partitions
            )
            status[asset] = {k: v.value if v else None for k, v in (found or {}).items()}
    print(json.dumps({"success": result.success, "status": status}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
