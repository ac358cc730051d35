"""The assets: the catalogue and the versions (one op, one ListImages), then the warehouse."""

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.config import build_targets, sync_options
from pipeline.defaults import LOOKBACK_MINUTES
from pipeline.errors import UserError
from pipeline.extract import sync
from pipeline.render import report_metadata
from pipeline.run import SyncReport
from pipeline.schema import IMAGE_SCHEMA, IMAGE_VERSION_SCHEMA
from pipeline.storage import AUTO_COMPACT_FILES
from pipeline.warehouse import ensure_views, views_summary

from .resources import DataDirResource, SageMakerResource

__all__ = ["SYNC_OP", "build_sync_assets", "build_warehouse_asset", "changes_from_metadata"]

GROUP = "sagemaker"
SYNC_OP = "sync_sagemaker_sources"
CHANGES_COLUMNS = ("image", "new", "changed", "deleted")
CHANGED_IMAGES_ROWS = 50


class SyncConfig(dg.Config):
    """Run config of a sync: which images, and how far to look."""

    image_names: list[str] = Field(default_factory=list)
    full_refresh: bool = False
    reconcile: bool = False
    lookback_minutes: float = LOOKBACK_MINUTES
    enrich: bool = Field(
        default=False,
        description="Describe new and changed versions (DescribeImageVersion + ListAliases); "
        "with reconcile or full_refresh, every version that lacks details.",
    )


def column_schema(schema: Any) -> dg.TableSchema:
    """Dagster's column schema from one of the project's Arrow schemas."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def _changed_images_table(report: SyncReport) -> dg.MetadataValue:
    rows = [
        dg.TableRecord(
            {
                "source": f"{c.source}/{c.region}",
                "image": c.image_name,
                "new": c.new,
                "changed": c.changed,
                "deleted": c.deleted,
            }
        )
        for c in report.changes[:CHANGED_IMAGES_ROWS]
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("source"),
            dg.TableColumn("image"),
            dg.TableColumn("new", "int"),
            dg.TableColumn("changed", "int"),
            dg.TableColumn("deleted", "int"),
        ]
    )
    return dg.MetadataValue.table(rows, schema=schema)


def changes_from_metadata(metadata: Mapping[str, dg.MetadataValue]) -> list[tuple[Any, ...]]:
    """(image, new, changed, deleted) rows back from the `changed_images` table metadata."""
    table = metadata["changed_images"]
    assert isinstance(table, dg.TableMetadataValue)
    return [tuple(record.data[column] for column in CHANGES_COLUMNS) for record in table.records]


def build_sync_assets(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`sagemaker_images` and `image_versions`, computed together, partitioned by source."""

    @dg.multi_asset(
        name=SYNC_OP,
        specs=[
            dg.AssetSpec(
                "sagemaker_images",
                group_name=GROUP,
                description="The image catalogue from ListImages (DATA/images/).",
                metadata={"dagster/column_schema": column_schema(IMAGE_SCHEMA)},
            ),
            dg.AssetSpec(
                "image_versions",
                group_name=GROUP,
                description="Every observed state of every image version, per image "
                "incremental with tombstones (DATA/image_versions/).",
                metadata={"dagster/column_schema": column_schema(IMAGE_VERSION_SCHEMA)},
            ),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def sync_sagemaker_sources(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        sagemaker: SageMakerResource,
        data: DataDirResource,
    ) -> Iterator[dg.MaterializeResult[None]]:
        try:
            targets = build_targets(
                sagemaker.project(), sagemaker.access(), partition_keys=context.partition_keys
            )
            options = sync_options(
                image_names=config.image_names,
                full_refresh=config.full_refresh,
                reconcile=config.reconcile,
                lookback_minutes=config.lookback_minutes,
                concurrency=sagemaker.concurrency,
                enrich=config.enrich,
                compact=False,  # image_versions_warehouse compacts, once per run
            )
            data_dir = data.data_dir()
            report = sync(data_dir, targets, options)
        except UserError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.log.info(" ".join(f"{k}={v}" for k, v in report_metadata(report).items()))
        counts = views_summary(data_dir, ["images", "image_versions"])
        metadata = {**report_metadata(report), "changed_images": _changed_images_table(report)}
        yield dg.MaterializeResult(
            asset_key="sagemaker_images",
            metadata={
                "dagster/row_count": counts["images"],
                "dagster/column_schema": column_schema(IMAGE_SCHEMA),
            },
        )
        yield dg.MaterializeResult(
            asset_key="image_versions",
            metadata={
                "dagster/row_count": counts["image_versions"],
                "dagster/column_schema": column_schema(IMAGE_VERSION_SCHEMA),
                **metadata,
            },
        )
        if not report.ok:
            raise dg.Failure(
                description=f"{len(report.failures)} image(s) or source(s) failed; "
                "everything else is committed",
                metadata={
                    "failures": dg.MetadataValue.md(
                        "\n".join(f"- {failure}" for failure in report.failures[:100])
                    )
                },
                allow_retries=False,
            )

    return sync_sagemaker_sources


def build_warehouse_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`image_versions_warehouse`: compaction and the DuckDB views of the whole dataset.

    It shares the sources' partitions and single-run policy only so that a backfill of every
    asset stays one run; its work always covers the whole data dir.
    """

    with warnings.catch_warnings():
        # backfill_policy on a single @asset is "beta" in dagster 1.13; it is deliberate here.
        warnings.simplefilter("ignore", dg.BetaWarning)
        decorate = dg.asset(
            name="image_versions_warehouse",
            deps=["image_versions", "sagemaker_images"],
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=dg.BackfillPolicy.single_run(),
            description="DuckDB views over the dataset (DATA/warehouse.duckdb), after compaction.",
        )

    @decorate
    def image_versions_warehouse(data: DataDirResource) -> dg.MaterializeResult[None]:
        data_dir = data.data_dir()
        with data_dir.writer_lock(timeout_s=60):
            before, after = data_dir.compact(min_files=AUTO_COMPACT_FILES + 1)
            ensure_views(data_dir)
        counts = views_summary(data_dir)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": counts["image_versions"],
                **{f"rows_{name}": count for name, count in counts.items()},
                "parquet_files": after,
                "files_compacted": before - after,
                "path": dg.MetadataValue.path(str(data_dir.warehouse_path)),
            }
        )

    return image_versions_warehouse
