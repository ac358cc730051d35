"""`image-versions demo` through Dagster: each sync is one in-process run of the job.

The demo belongs to the Dagster layer: `image-versions demo` (pipeline/cli.py) runs this module
as a child process, `python -m assets.demo [--data-dir DIR]`, so that pipeline/ never imports
Dagster.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import dagster as dg

from pipeline.config import load_config
from pipeline.demo import SyncOutcome, SyncRunner, run_demo
from pipeline.run import SyncOptions
from pipeline.storage import DataDir

from .checks import FAILED_BUILDS_CHECK
from .definitions import alerts_resource, build_definitions
from .resources import DataDirResource, SageMakerResource
from .schedules import JOB_NAME, range_tags
from .sync_assets import SYNC_OP, SyncConfig, changes_from_metadata


def _failed_builds(result: dg.ExecuteInProcessResult) -> tuple[list[str], int]:
    """The versions the failed-builds check listed, and how many it found."""
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == FAILED_BUILDS_CHECK:
            listed, count = (
                evaluation.metadata[k].value for k in ("failed_versions", "failed_count")
            )
            assert isinstance(listed, list) and isinstance(count, int)
            lines = [
                f"{v['image_name']} v{v['version']} {v['status']}: {v['failure_reason']}"
                for v in listed
            ]
            return lines, count
    return [], 0


def dagster_runner(sources_file: Path, data_dir: DataDir) -> SyncRunner:
    """Runs the `sync_image_versions` job over every source, on an in-memory instance; the
    failed-builds check posts to $IMAGE_VERSIONS_ALERT_WEBHOOK_URL when it is set."""
    config = load_config(str(sources_file))
    definitions = build_definitions(
        config,
        SageMakerResource(config_path=str(sources_file)),
        DataDirResource(path=str(data_dir.root)),
        alerts=alerts_resource(os.environ),
    )
    job = definitions.resolve_job_def(JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()

    def run(options: SyncOptions) -> SyncOutcome:
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(config.partition_keys()),
            run_config={
                "ops": {SYNC_OP: {"config": SyncConfig.for_options(options)}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            raise_on_error=False,
        )
        metadata = next(
            m.metadata
            for m in result.asset_materializations_for_node(SYNC_OP)
            if m.asset_key == dg.AssetKey("image_versions")
        )
        failure = result.failure_data_for_node(SYNC_OP)
        failed_builds, failed_count = _failed_builds(result)
        return SyncOutcome(
            figures={key: value.value for key, value in metadata.items()},
            changes=changes_from_metadata(metadata),
            failures=[failure.error.message.strip()] if failure and failure.error else [],
            failed_builds=failed_builds,
            failed_count=failed_count,
        )

    return run


def run_dagster_demo(data_dir_flag: str | None, out: TextIO) -> int:
    return run_demo(data_dir_flag, out, dagster_runner)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="image-versions demo", description=__doc__)
    parser.add_argument("--data-dir", metavar="DIR", help="default: a new temporary directory")
    args = parser.parse_args(argv)
    return run_dagster_demo(args.data_dir, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
