"""Partitions tell the truth: a run over several targets materializes only the partitions whose
target succeeded, each with its own figures (its `sync_runs` row), and leaves a failed target's
partition failed, to be retried alone."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata as metadata_of_package
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.schedules import JOB_NAME
from pipeline import DISTRIBUTION
from pipeline.config import load_config
from pipeline.emulator import EmulatorServer
from pipeline.storage import DataDir
from pipeline.warehouse import run_query
from tests.support import OTHER_REGION, REGION, SYNC_OP, definitions, run_job

pytestmark = pytest.mark.dagster

SYNC_RUNS_FIGURES = (
    "images",
    "versions_new",
    "versions_changed",
    "versions_deleted",
    "api_calls",
    "throttled_retries",
)
SYNCED_ASSETS = ("sagemaker_images", "image_versions")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as temporary:
        yield temporary


def statuses(
    built: dg.Definitions, instance: dg.DagsterInstance, asset: str
) -> dict[str, dg.AssetPartitionStatus | None]:
    partitions = built.resolve_job_def(JOB_NAME).partitions_def
    assert partitions is not None
    found = instance.get_status_by_partition(
        dg.AssetKey(asset), partitions.get_partition_keys(), partitions
    )
    assert found is not None
    return dict(found)


def materializations(
    instance: dg.DagsterInstance, asset: str, partition: str
) -> list[dg.AssetMaterialization]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=100,
    ).records
    return [record.asset_materialization for record in records if record.asset_materialization]


def sync_runs(root: Path, source: str, region: str) -> list[dict[str, Any]]:
    """The target's rows of sync history, newest first."""
    found = run_query(
        DataDir(root),
        f"SELECT * FROM sync_runs WHERE source = '{source}' AND region = '{region}' "
        "ORDER BY started_at DESC",
    )
    return [dict(zip(found.columns, row, strict=True)) for row in found.rows]


def test_a_denied_target_leaves_its_partition_failed_and_the_other_materialized(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "data"
    built = definitions(sources_file, root)
    good, denied = load_config(str(sources_file)).partition_keys()
    assert (good, denied) == (f"emu/{REGION}", f"emu/{OTHER_REGION}")
    server.emulator.faults.denied_regions = frozenset({OTHER_REGION})

    result = run_job(built, instance, [good, denied])

    assert not result.success
    failure = result.failure_data_for_node(SYNC_OP)
    assert failure is not None and "AccessDenied" in failure.error.message
    for asset in SYNCED_ASSETS:
        assert statuses(built, instance, asset) == {
            good: dg.AssetPartitionStatus.MATERIALIZED,
            denied: dg.AssetPartitionStatus.FAILED,
        }, asset
        assert materializations(instance, asset, denied) == []
    [versions] = materializations(instance, "image_versions", good)
    [row] = sync_runs(root, "emu", REGION)
    assert row["ok"] and row["images"] == len(server.emulator.image_names(REGION))
    metadata = versions.metadata
    assert {name: metadata[name].value for name in SYNC_RUNS_FIGURES} == {
        name: row[name] for name in SYNC_RUNS_FIGURES
    }
    assert metadata["seconds"].value == round(row["seconds"], 3)
    assert metadata["targets"].value == 1
    assert metadata["image_versions_version"].value == metadata_of_package.version(DISTRIBUTION)
    live = len(server.emulator.live_versions(REGION))
    assert metadata["live_versions"].value == live
    assert metadata["dagster/row_count"].value == live  # one state each, one sync so far
    changed = {record.data["source"] for record in metadata["changed_images"].value.records}
    assert changed == {good}
    [images] = materializations(instance, "sagemaker_images", good)
    assert images.metadata["dagster/row_count"].value == row["images"]

    # The failed partition is retried on its own once the source lets us in.
    server.emulator.faults.denied_regions = frozenset()
    retry = run_job(built, instance, [denied])
    assert retry.success
    for asset in SYNCED_ASSETS:
        assert set(statuses(built, instance, asset).values()) == {
            dg.AssetPartitionStatus.MATERIALIZED
        }
    [versions] = materializations(instance, "image_versions", denied)
    row, refused = sync_runs(root, "emu", OTHER_REGION)
    assert not refused["ok"] and "AccessDenied" in refused["error"]
    assert row["ok"] and row["images"] == len(server.emulator.image_names(OTHER_REGION)) > 0
    assert versions.metadata["images"].value == row["images"]
    assert len(materializations(instance, "image_versions", good)) == 1  # not re-run


def test_each_partition_of_a_good_run_carries_its_own_figures(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "data"
    built = definitions(sources_file, root)
    keys = load_config(str(sources_file)).partition_keys()
    result = run_job(built, instance, keys)
    assert result.success
    for key, region in zip(keys, (REGION, OTHER_REGION), strict=True):
        [row] = sync_runs(root, "emu", region)
        [versions] = materializations(instance, "image_versions", key)
        metadata = versions.metadata
        assert {name: metadata[name].value for name in SYNC_RUNS_FIGURES} == {
            name: row[name] for name in SYNC_RUNS_FIGURES
        }, key
        assert metadata["seconds"].value == round(row["seconds"], 3)
        assert metadata["live_versions"].value == len(server.emulator.live_versions(region))
