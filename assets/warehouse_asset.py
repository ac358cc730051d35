"""`image_versions_warehouse`: the DuckDB views over the whole dataset, and their row counts."""

import dagster as dg

from pipeline.storage import DataDir
from pipeline.warehouse import refresh_views, views_summary

from .beta import using_beta_apis
from .catalog import WAREHOUSE
from .resources import DataDirResource
from .sync_assets import GROUP, failing_on_user_errors

__all__ = ["WAREHOUSE_ASSET", "build_warehouse_asset"]

WAREHOUSE_ASSET = "image_versions_warehouse"


def build_warehouse_asset(
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    data_dir: DataDir,
) -> dg.AssetsDefinition:
    """The views, made sure of; cheap and right after a sync of any subset of the partitions.

    It only (re)creates the views when their definition changed (each target's sync compacts
    its own partitions and takes only its own lock), so runs of disjoint partitions never
    wait for each other here. It shares the sources' partitions and backfill policy only so
    that a backfill of every asset needs no run of its own for it.
    """

    with using_beta_apis():  # backfill_policy on a single @asset
        decorate = dg.asset(
            name=WAREHOUSE_ASSET,
            deps=["image_versions", "sagemaker_images"],
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=backfill_policy,
            kinds=WAREHOUSE.kinds(data_dir),
            metadata=WAREHOUSE.definition_metadata(data_dir),
            description="The DuckDB views over the whole dataset (DATA/warehouse.duckdb); its "
            "table is `image_versions`, one row per live version.",
        )

    @decorate
    def image_versions_warehouse(data: DataDirResource) -> dg.MaterializeResult[None]:
        data_dir = data.data_dir()
        with failing_on_user_errors():
            refresh_views(data_dir)
            counts = views_summary(data_dir)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": counts["image_versions"],
                **{f"rows_{name}": count for name, count in counts.items()},
                **WAREHOUSE.location(data_dir),
            }
        )

    return image_versions_warehouse
