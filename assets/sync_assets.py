"""The catalogue and the versions: one op (one ListImages per target) materialises both, for
the partitions (source x region targets) of its run: each partition whose target succeeded,
with its own target's figures; a failed target's partition is left failed, and fails the run."""

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import create_model

from pipeline import __version__
from pipeline.config import build_targets
from pipeline.errors import UserError
from pipeline.extract import sync
from pipeline.render import report_metadata
from pipeline.run import SourceTarget, SyncOptions, SyncReport
from pipeline.settings import options_of
from pipeline.storage import DataDir
from pipeline.warehouse import views_summary_by_source

from .catalog import IMAGES, VERSIONS
from .resources import DataDirResource, SageMakerResource, option_fields, option_values

__all__ = [
    "GROUP",
    "SYNC_OP",
    "SyncConfig",
    "build_sync_assets",
    "changes_from_metadata",
    "failing_on_user_errors",
]

GROUP = "sagemaker"
SYNC_OP = "sync_sagemaker_sources"
CHANGES_COLUMNS = ("image", "new", "changed", "deleted")
CHANGED_IMAGES_ROWS = 50
SUMMARY_VIEWS = ("images", "image_version_history", "image_versions")


_RunConfig: Any = create_model("RunConfig", __base__=dg.Config, **option_fields("sync"))


class SyncConfig(_RunConfig):  # type: ignore[misc]
    """Run config of a sync: the options of group `sync` in settings.OPTIONS (which images, how
    far to look, how many targets side by side, how often to commit, how long to wait)."""

    def options(self, sagemaker: SageMakerResource) -> SyncOptions:
        """The core's options of this run; `concurrency` is the resource's."""
        return SyncOptions(**option_values(self, "sync"), concurrency=sagemaker.concurrency)

    @classmethod
    def for_options(cls, options: SyncOptions) -> dict[str, Any]:
        """The run config that asks for `options` (the resource's concurrency aside)."""
        values = {o.dagster_name: getattr(options, o.name) for o in options_of("sync")}
        return {**values, "image_names": sorted(options.image_names or ())}


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
) -> tuple[dict[str, SourceTarget], SyncReport]:
    """The target of each partition of the run, and the core's sync of them; a usage or
    configuration error fails the run without retries (and materializes nothing)."""
    with failing_on_user_errors():
        project, access = sagemaker.project(), sagemaker.access()
        targets = {
            key: build_targets(project, access, partition_keys=[key])[0]
            for key in context.partition_keys
        }
        options = config.options(sagemaker)
        return targets, sync(data_dir, list(targets.values()), options)


def _partition_metadata(
    data_dir: DataDir, shares: Mapping[str, tuple[SourceTarget, SyncReport]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """asset -> partition -> its materialization's metadata: the figures of its own target(s),
    as their rows of `sync_runs` say, and its own rows of the views."""
    with failing_on_user_errors():  # an unreadable file: its one line, not DuckDB's traceback
        counts = views_summary_by_source(data_dir, SUMMARY_VIEWS)
    images: dict[str, dict[str, Any]] = {}
    versions: dict[str, dict[str, Any]] = {}
    for key, (target, share) in shares.items():
        rows = counts.get(target.configured, dict.fromkeys(SUMMARY_VIEWS, 0))
        images[key] = {"dagster/row_count": rows["images"], **IMAGES.location(data_dir)}
        versions[key] = {
            "dagster/row_count": rows["image_version_history"],
            "live_versions": rows["image_versions"],
            **VERSIONS.location(data_dir),
            **report_metadata(share),
            "changed_images": _changed_images_table(share),
            "image_versions_version": __version__,
        }
    return {"sagemaker_images": images, "image_versions": versions}


def _failure(report: SyncReport, failed: Sequence[str]) -> dg.Failure:
    """The run's failure: which partitions failed, and why; the others are materialized."""
    reasons = [str(failure) for failure in report.failures]
    return dg.Failure(
        description=f"{len(failed)} partition(s) failed and are not materialized "
        f"({', '.join(failed)}); everything else is committed. First failure: {reasons[0]}",
        metadata={
            "failed_partitions": dg.MetadataValue.json(list(failed)),
            "failures": dg.MetadataValue.md("\n".join(f"- {reason}" for reason in reasons[:100])),
        },
        allow_retries=False,
    )


def _asset_specs(data_dir: DataDir, freshness: timedelta) -> list[dg.AssetSpec]:
    return [
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
    ]


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
        specs=_asset_specs(data_dir, freshness),
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
    )
    def sync_sagemaker_sources(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        sagemaker: SageMakerResource,
        data: DataDirResource,
    ) -> Iterator[dg.MaterializeResult[None] | dg.AssetMaterialization]:
        data_dir = data.data_dir()
        targets, report = _sync(context, config, sagemaker, data_dir)
        context.log.info(" ".join(f"{k}={v}" for k, v in report_metadata(report).items()))
        shares = {key: (t, report.of_source(*t.configured)) for key, t in targets.items()}
        metadata = _partition_metadata(data_dir, shares)
        failed = [key for key, (_, share) in shares.items() if not share.ok]
        if report.ok:
            for asset, by_partition in metadata.items():
                for key, values in by_partition.items():
                    context.add_asset_metadata(values, asset_key=asset, partition_key=key)
                yield dg.MaterializeResult(asset_key=asset)
            return
        # An output would materialize every partition of the run: record the good ones alone.
        for asset, by_partition in metadata.items():
            for key, values in by_partition.items():
                if key not in failed:
                    yield dg.AssetMaterialization(asset_key=asset, partition=key, metadata=values)
        raise _failure(report, failed)

    return sync_sagemaker_sources
