"""The catalogue and the versions: one op (one ListImages per target) materialises both, for
the partitions (source x region targets) of its run."""

import contextlib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.config import build_targets, sync_options
from pipeline.defaults import LOOKBACK_MINUTES, ORCHESTRATED_WAIT_S
from pipeline.errors import UserError
from pipeline.extract import sync
from pipeline.render import report_metadata
from pipeline.run import SyncReport
from pipeline.storage import DataDir
from pipeline.warehouse import views_summary

from .catalog import IMAGES, VERSIONS
from .resources import DataDirResource, SageMakerResource

__all__ = [
    "GROUP",
    "SYNC_OP",
    "build_sync_assets",
    "changes_from_metadata",
    "failing_on_user_errors",
]

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
    wait_seconds: float = Field(
        default=ORCHESTRATED_WAIT_S,
        description="How long each target waits for another run that is syncing it.",
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


@contextlib.contextmanager
def failing_on_user_errors() -> Iterator[None]:
    """A usage, configuration or data error from the core (an unreadable file, say) fails
    the run with its one-line message, without retries: running again cannot fix it."""
    try:
        yield
    except UserError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _sync(
    context: dg.AssetExecutionContext,
    config: SyncConfig,
    sagemaker: SageMakerResource,
    data_dir: DataDir,
) -> SyncReport:
    """The core's sync of the run's partitions; a usage or configuration error fails the run
    without retries."""
    with failing_on_user_errors():
        targets = build_targets(
            sagemaker.project(), sagemaker.access(), partition_keys=context.partition_keys
        )
        options = sync_options(
            image_names=config.image_names,
            full_refresh=config.full_refresh,
            reconcile=config.reconcile,
            lookback_minutes=config.lookback_minutes,
            concurrency=sagemaker.concurrency,
            lock_timeout_s=config.wait_seconds,
            enrich=config.enrich,
        )
        return sync(data_dir, targets, options)


def build_sync_assets(
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    data_dir: DataDir,
    freshness: timedelta,
) -> dg.AssetsDefinition:
    """`sagemaker_images` and `image_versions`, computed together, partitioned by target.

    `data_dir` is the dataset as the location sees it at load (for the catalog's kinds and
    paths); `image_versions` fails its freshness policy when older than `freshness`.
    """

    @dg.multi_asset(
        name=SYNC_OP,
        specs=[
            dg.AssetSpec(
                "sagemaker_images",
                group_name=GROUP,
                description="The image catalogue from ListImages (DATA/images/).",
                kinds=IMAGES.kinds(data_dir),
                metadata=IMAGES.definition_metadata(data_dir),
            ),
            dg.AssetSpec(
                "image_versions",
                group_name=GROUP,
                description="Every observed state of every image version, per image "
                "incremental with tombstones (DATA/image_versions/).",
                kinds=VERSIONS.kinds(data_dir),
                metadata=VERSIONS.definition_metadata(data_dir),
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=freshness),
            ),
        ],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
    )
    def sync_sagemaker_sources(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        sagemaker: SageMakerResource,
        data: DataDirResource,
    ) -> Iterator[dg.MaterializeResult[None]]:
        data_dir = data.data_dir()
        report = _sync(context, config, sagemaker, data_dir)
        figures = report_metadata(report)
        context.log.info(" ".join(f"{key}={value}" for key, value in figures.items()))
        with failing_on_user_errors():
            counts = views_summary(data_dir, ["images", "image_version_history", "image_versions"])
        yield dg.MaterializeResult(
            asset_key="sagemaker_images",
            metadata={"dagster/row_count": counts["images"], **IMAGES.location(data_dir)},
        )
        yield dg.MaterializeResult(
            asset_key="image_versions",
            metadata={
                "dagster/row_count": counts["image_version_history"],
                "live_versions": counts["image_versions"],
                **VERSIONS.location(data_dir),
                **figures,
                "changed_images": _changed_images_table(report),
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
