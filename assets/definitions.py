"""The code location: `dagster dev` at the repository root loads `defs` from here."""

import os

import dagster as dg

from pipeline.config import CONFIG_ENV, DATA_DIR_ENV, ProjectConfig, load_config

from .checks import build_checks
from .resources import DataDirResource, SageMakerResource
from .schedules import JOB_NAME, build_schedules, schedule_interval
from .sync_assets import build_sync_assets, build_warehouse_asset

__all__ = ["build_definitions", "defs"]


def build_definitions(
    config: ProjectConfig, resources: dict[str, object] | None = None
) -> dg.Definitions:
    """Definitions for the sources in `config`: one partition per (source, region)."""
    partition_keys = config.partition_keys()
    partitions = dg.StaticPartitionsDefinition(partition_keys)
    assets = [build_sync_assets(partitions), build_warehouse_asset(partitions)]
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.assets(*assets),
        description="Sync every selected source, then refresh the warehouse.",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=build_checks(2 * schedule_interval(config.sync_cron)),
        jobs=[job],
        schedules=build_schedules(job, partition_keys, config.sync_cron, config.reconcile_cron),
        resources=resources or default_resources(config),
    )


def default_resources(config: ProjectConfig) -> dict[str, object]:
    """Resources bound to the environment: the data dir always, the sources file when named."""
    named = config.path is not None and os.environ.get(CONFIG_ENV)
    return {
        "sagemaker": SageMakerResource(config_path=dg.EnvVar(CONFIG_ENV) if named else None),
        "data": DataDirResource(path=dg.EnvVar(DATA_DIR_ENV)),
    }


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster at code-location load, not at import: reads the sources file then."""
    return build_definitions(load_config())
