"""One run of the Dagster job `sync_image_versions` over every source, in a process of its own
(B7), as `image-versions demo` runs it: `execute_in_process` on an ephemeral instance, with
the partition-range tags that make one run cover every source.

``python -m benchmarks.dagster_child --config FILE --data-dir DIR`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    # Imported here so that the import time is measured apart from the run.
    import dagster as dg

    from assets.definitions import build_definitions
    from assets.resources import DataDirResource, SageMakerResource
    from assets.schedules import JOB_NAME, range_tags
    from pipeline.config import load_config

    imported = time.perf_counter()
    config = load_config(args.config)
    definitions = build_definitions(
        config,
        SageMakerResource(config_path=args.config),
        DataDirResource(path=args.data_dir),
    )
    job = definitions.resolve_job_def(JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()
    ready = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags=range_tags(config.partition_keys()),
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "import_seconds": imported - started,
                "setup_seconds": ready - imported,
                "run_seconds": done - ready,
                "success": result.success,
                "runs": instance.get_runs_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
