"""The job and its two schedules; each tick is one run covering every source partition."""

from datetime import UTC, datetime, timedelta
from itertools import islice

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from dagster._utils.schedules import cron_string_iterator

from .sync_assets import SYNC_OP

__all__ = [
    "JOB_NAME",
    "RANGE_END",
    "RANGE_START",
    "build_schedules",
    "range_tags",
    "schedule_interval",
]

JOB_NAME = "sync_image_versions"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def schedule_interval(cron: str, now: datetime | None = None) -> timedelta:
    """The time between two consecutive ticks of `cron` (the next two after `now`)."""
    start = (now or datetime.now(UTC)).timestamp()
    first, second = islice(cron_string_iterator(start, cron, "UTC"), 2)
    return second - first


def range_tags(partition_keys: list[str]) -> dict[str, str]:
    """Run tags that select every partition: with a single-run policy, one run for them all."""
    return {RANGE_START: partition_keys[0], RANGE_END: partition_keys[-1]}


def all_partitions_request(
    partition_keys: list[str], *, reconcile: bool, run_key: str | None
) -> dg.RunRequest:
    """One run over the whole range of source partitions (the job's backfill policy is one run)."""
    return dg.RunRequest(
        run_key=run_key,
        tags=range_tags(partition_keys),
        run_config={"ops": {SYNC_OP: {"config": {"reconcile": reconcile}}}},
    )


def build_schedules(
    job: UnresolvedAssetJobDefinition,
    partition_keys: list[str],
    sync_cron: str,
    reconcile_cron: str,
) -> list[dg.ScheduleDefinition]:
    """`sync_image_versions_hourly` and `reconcile_image_versions_daily`, stopped by default."""

    def make(name: str, cron: str, reconcile: bool, description: str) -> dg.ScheduleDefinition:
        @dg.schedule(
            name=name,
            cron_schedule=cron,
            job=job,
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
