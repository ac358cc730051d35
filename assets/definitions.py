"""The code location: `dagster dev` or `dg dev` at the repository root loads `defs` from here."""

import os
from collections.abc import Mapping

import dagster as dg

from pipeline.config import CONFIG_ENV, DATA_DIR_ENV, ProjectConfig, load_config
from pipeline.cron import longest_interval
from pipeline.errors import ConfigError

from .checks import build_checks
from .code_references import GitSource, git_source, with_code_references
from .resources import BuildAlertsResource, DataDirResource, SageMakerResource, WarehouseResource
from .schedules import JOB_NAME, build_schedules
from .sync_assets import build_sync_assets
from .warehouse_asset import build_warehouse_asset

__all__ = [
    "ALERT_WEBHOOK_ENV",
    "PARTITIONS_PER_RUN_ENV",
    "alerts_resource",
    "build_definitions",
    "definitions_from_environment",
    "defs",
    "environment_resources",
    "partitions_per_run",
]

PARTITIONS_PER_RUN_ENV = "IMAGE_VERSIONS_PARTITIONS_PER_RUN"
ALERT_WEBHOOK_ENV = "IMAGE_VERSIONS_ALERT_WEBHOOK_URL"
FRESHNESS_INTERVALS = 2
"""`image_versions` is stale once older than this many (longest) sync intervals."""


def backfill_policy(max_partitions_per_run: int | None) -> dg.BackfillPolicy:
    """A whole backfill in one run (None), or in runs of at most N partitions side by side."""
    if max_partitions_per_run is None:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=max_partitions_per_run)


def partitions_per_run(environ: Mapping[str, str]) -> int | None:
    """$IMAGE_VERSIONS_PARTITIONS_PER_RUN: unset or empty for one run per backfill."""
    raw = environ.get(PARTITIONS_PER_RUN_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"{PARTITIONS_PER_RUN_ENV} must be a whole number of partitions (1 or more), or "
            f"unset for one run per backfill, not {raw!r}"
        )
    return int(raw)


def build_definitions(
    config: ProjectConfig,
    sagemaker: SageMakerResource,
    data: DataDirResource,
    *,
    max_partitions_per_run: int | None = None,
    git: GitSource | None = None,
    alerts: BuildAlertsResource | None = None,
) -> dg.Definitions:
    """Definitions for the sources in `config`: one partition per (source, region).

    Every job runs its steps in one process (the in-process executor): a step is cheap beside
    the start of a process, and the parallelism is elsewhere (the targets of a run sync side
    by side in the core; a backfill fans out over runs when `max_partitions_per_run` is set).
    `alerts` configures the failed-builds check (default: WARN, no webhook).
    """
    partition_keys = config.partition_keys()
    partitions = dg.StaticPartitionsDefinition(partition_keys)
    policy = backfill_policy(max_partitions_per_run)
    freshness = FRESHNESS_INTERVALS * longest_interval(config.sync_cron)
    data_dir = data.data_dir_at_load()
    assets = with_code_references(
        [
            build_sync_assets(partitions, policy, data_dir, freshness),
            build_warehouse_asset(partitions, policy, data_dir),
        ],
        git,
    )
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.assets(*assets),
        description="Sync every selected source, check the data, then refresh the warehouse.",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=build_checks(freshness),
        jobs=[job],
        schedules=build_schedules(partition_keys, config.sync_cron, config.reconcile_cron),
        resources={
            "sagemaker": sagemaker,
            "data": data,
            "warehouse": WarehouseResource(path=data.path),  # the same binding (EnvVar or path)
            "alerts": alerts or BuildAlertsResource(),
        },
        executor=dg.in_process_executor,
    )


def environment_resources(config: ProjectConfig) -> tuple[SageMakerResource, DataDirResource]:
    """The resources bound to the environment: the data dir always, the sources file when
    named."""
    named = config.path is not None and os.environ.get(CONFIG_ENV)
    return (
        SageMakerResource(config_path=dg.EnvVar(CONFIG_ENV) if named else None),
        DataDirResource(path=dg.EnvVar(DATA_DIR_ENV)),
    )


def alerts_resource(environ: Mapping[str, str]) -> BuildAlertsResource:
    """The failed-builds check's settings: its webhook bound to $IMAGE_VERSIONS_ALERT_WEBHOOK_URL
    when that is set (read when the check runs, never stored in the definitions)."""
    if not environ.get(ALERT_WEBHOOK_ENV, "").strip():
        return BuildAlertsResource()
    return BuildAlertsResource(webhook_url=dg.EnvVar(ALERT_WEBHOOK_ENV))


def definitions_from_environment() -> dg.Definitions:
    """The code location's definitions, from the sources file, the environment and the
    checkout's git remote: what a team's own module merges its assets with
    (examples/downstream.py)."""
    config = load_config()
    return build_definitions(
        config,
        *environment_resources(config),
        max_partitions_per_run=partitions_per_run(os.environ),
        git=git_source(),
        alerts=alerts_resource(os.environ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster at code-location load, not at import."""
    return definitions_from_environment()
