"""The job's two schedules; each tick is one run covering every source partition."""

import dagster as dg

from .sync_assets import SYNC_OP

__all__ = ["JOB_NAME", "RANGE_END", "RANGE_START", "build_schedules", "range_tags"]

JOB_NAME = "sync_image_versions"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def range_tags(partition_keys: list[str]) -> dict[str, str]:
    """Run tags that select every partition in one run, whatever the backfill policy."""
    return {RANGE_START: partition_keys[0], RANGE_END: partition_keys[-1]}


def all_partitions_request(
    partition_keys: list[str], *, reconcile: bool, run_key: str | None
) -> dg.RunRequest:
    """One run over the whole range of source partitions: the targets sync side by side in it."""
    return dg.RunRequest(
        run_key=run_key,
        tags=range_tags(partition_keys),
        run_config={"ops": {SYNC_OP: {"config": {"reconcile": reconcile}}}},
    )


def build_schedules(
    partition_keys: list[str], sync_cron: str, reconcile_cron: str
) -> list[dg.ScheduleDefinition]:
    """`sync_image_versions_hourly` and `reconcile_image_versions_daily` of the job
    `JOB_NAME`, stopped by default."""

    def make(name: str, cron: str, reconcile: bool, description: str) -> dg.ScheduleDefinition:
        @dg.schedule(
            name=name,
            cron_schedule=cron,
            job_name=JOB_NAME,
            execution_timezone="UTC",
            description=description,
        )
        def tick(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
            stamp = context.scheduled_execution_time
            key = f"{name}:{stamp.isoformat()}" if stamp else None
            return all_partitions_request(partition_keys, reconcile=reconcile, run_key=key)

        return tick

    return [
        make(
            "sync_image_versions_hourly",
            sync_cron,
            False,
            "Incremental sync of every source (cron: [schedules] sync_cron).",
        ),
        make(
            "reconcile_image_versions_daily",
            reconcile_cron,
            True,
            "Full listings that catch deleted versions (cron: [schedules] reconcile_cron).",
        ),
    ]
