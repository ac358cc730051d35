"""The Dagster code location: real assets materialised on a temporary instance, emulator-backed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from assets.definitions import defs
from assets.resources import WarehouseResource
from assets.schedules import JOB_NAME, RANGE_END, RANGE_START
from assets.warehouse_asset import WAREHOUSE_ASSET
from pipeline.config import CONFIG_ENV, DATA_DIR_ENV, load_config
from pipeline.emulator import EmulatorServer
from pipeline.state import save_state
from pipeline.storage import DataDir
from tests.support import (
    OTHER_REGION,
    REGION,
    SYNC_OP,
    definitions,
    run_cli,
    run_job,
    run_sync,
    stored_states,
)

pytestmark = pytest.mark.dagster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as temporary:
        yield temporary


def view(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).fetchall()


LIVE = (
    "SELECT account_id, region, image_name, version, image_arn, image_version_arn, status, "
    "failure_reason, creation_time, last_modified_time FROM image_versions ORDER BY ALL"
)


def test_definitions_load_from_the_sources_file(
    sources_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMAGE_VERSIONS_CONFIG", str(sources_file))
    monkeypatch.setenv("IMAGE_VERSIONS_DATA_DIR", str(tmp_path / "data"))
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    assert {key.to_user_string() for key in loaded.resolve_all_asset_keys()} == {
        "sagemaker_images",
        "image_versions",
        "image_versions_warehouse",
    }
    job = loaded.resolve_job_def(JOB_NAME)
    assert job.partitions_def.get_partition_keys() == [f"emu/{REGION}", f"emu/{OTHER_REGION}"]
    assert set(loaded.resources or {}) == {"sagemaker", "data", "warehouse", "alerts"}
    assert {s.name for s in loaded.schedules} == {
        "sync_image_versions_hourly",
        "reconcile_image_versions_daily",
    }


def test_one_run_over_all_sources_equals_a_cli_sync(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    built = definitions(sources_file, tmp_path / "dagster-data")
    keys = load_config(str(sources_file)).partition_keys()
    result = run_job(built, instance, keys)
    assert result.success
    assert instance.get_runs_count() == 1

    cli = run_cli("sync", "--config", str(sources_file), "--data-dir", str(tmp_path / "cli-data"))
    assert cli.code == 0, cli.stderr
    from_dagster = view(tmp_path / "dagster-data", LIVE)
    assert from_dagster == view(tmp_path / "cli-data", LIVE)
    regions = {row[1] for row in from_dagster}
    assert regions == {REGION, OTHER_REGION}
    assert len(from_dagster) == sum(
        len(server.emulator.live_versions(r)) for r in (REGION, OTHER_REGION)
    )

    materializations = result.asset_materializations_for_node(SYNC_OP)
    versions = [m for m in materializations if m.asset_key.to_user_string() == "image_versions"]
    assert sorted(m.partition for m in versions) == sorted(keys)
    (history,) = view(tmp_path / "dagster-data", "SELECT count(*) FROM image_version_history")

    def total(name: str) -> int:  # each partition carries its own target's figures
        return sum(m.metadata[name].value for m in versions)

    assert total("dagster/row_count") == history[0]
    assert total("live_versions") == total("versions_new") == len(from_dagster)
    assert total("list_images_calls") == total("targets") == len(keys)
    for metadata in (m.metadata for m in versions):
        assert metadata["watermark_max"].value is not None
        assert metadata["dagster/uri"].value == str(tmp_path / "dagster-data/image_versions")
        assert len(metadata["changed_images"].value.records) <= 50
    checks = result.get_asset_check_evaluations()
    assert {c.asset_key.to_user_string() for c in checks} == {"image_versions"}
    builds = next(c for c in checks if c.check_name == "failed_builds_since_last_run")
    checks.remove(builds)
    assert len(checks) == 4 and all(c.passed for c in checks), [
        (c.check_name, c.description) for c in checks if not c.passed
    ]
    failed = "SELECT count(*) FROM image_versions WHERE status LIKE '%FAILED'"
    assert (
        builds.metadata["failed_count"].value == view(tmp_path / "dagster-data", failed)[0][0] > 0
    )
    warehouse = result.asset_materializations_for_node("image_versions_warehouse")
    assert sorted(m.partition for m in warehouse) == sorted(keys)
    assert {m.metadata["dagster/row_count"].value for m in warehouse} == {len(from_dagster)}


def test_chosen_images_are_resynced_through_run_config(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    built = definitions(sources_file, tmp_path / "data")
    keys = load_config(str(sources_file)).partition_keys()
    assert run_job(built, instance, keys).success
    chosen = sorted(server.emulator.image_names(REGION))[0]
    server.emulator.clear_requests()
    result = run_job(built, instance, keys[:1], {"image_names": [chosen], "full_refresh": True})
    assert result.success
    listed = [p for op, p in server.emulator.requests() if op == "ListImageVersions"]
    assert {p["ImageName"] for p in listed} == {chosen}
    assert all("LastModifiedTimeAfter" not in p for p in listed)


def test_a_failed_image_fails_the_run_after_the_rest_is_committed(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    built = definitions(sources_file, tmp_path / "data")
    keys = load_config(str(sources_file)).partition_keys()
    real = sorted(server.emulator.image_names(REGION))[:2]
    result = run_job(built, instance, keys[:1], {"image_names": [*real, "not-there"]})
    assert not result.success
    failure = result.failure_data_for_node(SYNC_OP)
    assert failure is not None and "failed" in failure.error.message
    images = {
        row[0] for row in view(tmp_path / "data", "SELECT DISTINCT image_name FROM image_versions")
    }
    with_versions = {v["ImageName"] for v in server.emulator.live_versions(REGION)}
    assert images == set(real) & with_versions


def test_checks_fail_on_seeded_bad_data(
    sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "data"
    built = definitions(sources_file, root)
    keys = load_config(str(sources_file)).partition_keys()
    assert run_job(built, instance, keys).success
    assert run_job(built, instance, keys).success
    data_dir = DataDir(root)

    # A second state of one version, observed at the same instant as its latest state.
    some_file = data_dir.version_files()[0]
    table = pq.read_table(some_file).slice(0, 1)
    twin = table.set_column(table.schema.get_field_index("status"), "status", [["DELETE_FAILED"]])
    data_dir.atomic_write(twin, some_file.parent / "part-seeded.parquet")
    # A watermark that went back.
    states = stored_states(data_dir)
    victim = next(s for s in states.values() if s.watermark_ms)
    victim.watermark_ms -= 60_000
    save_state(data_dir, states)

    evaluations = {name: c.passed for name, c in check_evaluations(built, instance).items()}
    assert evaluations == {
        "no_duplicate_live_versions": False,
        "watermarks_never_decrease": False,
        "values_match_the_api_model": True,
        "sources_are_fresh": True,
        "failed_builds_since_last_run": True,  # no sync since the last evaluation
    }

    # The duplicate is bad data: a sync's run stops before it refreshes the warehouse.
    blocked = run_job(built, instance, keys)
    assert not blocked.success
    assert blocked.asset_materializations_for_node("image_versions_warehouse") == []
    failed = {c.check_name for c in blocked.get_asset_check_evaluations() if not c.passed}
    assert failed == {"no_duplicate_live_versions"}


def check_evaluations(
    built: dg.Definitions, instance: dg.DagsterInstance
) -> dict[str, dg.AssetCheckEvaluation]:
    """Run only the asset checks, as a user would from the UI."""
    result = dg.materialize(
        [*built.assets, *built.asset_checks],
        instance=instance,
        resources=built.resources,
        selection=dg.AssetSelection.checks_for_assets("image_versions"),
        raise_on_error=False,
    )
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_freshness_and_model_checks_fail_when_they_should(
    sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "data"
    built = definitions(sources_file, root)
    assert not check_evaluations(built, instance)["sources_are_fresh"].passed  # nothing synced
    keys = load_config(str(sources_file)).partition_keys()
    assert run_job(built, instance, keys).success
    data_dir = DataDir(root)
    states = stored_states(data_dir)
    for state in states.values():
        state.last_synced_ms -= 3 * 3600 * 1000  # three hours: more than two hourly intervals
    save_state(data_dir, states)
    some_file = data_dir.version_files()[0]
    row = pq.read_table(some_file).slice(0, 1)
    odd = row.set_column(row.schema.get_field_index("status"), "status", [["EXPLODED"]])
    data_dir.atomic_write(odd, some_file.parent / "part-odd.parquet")
    evaluations = check_evaluations(built, instance)
    assert not evaluations["sources_are_fresh"].passed
    assert evaluations["sources_are_fresh"].severity == dg.AssetCheckSeverity.WARN
    assert not evaluations["values_match_the_api_model"].passed
    assert evaluations["values_match_the_api_model"].severity == dg.AssetCheckSeverity.ERROR


def test_schedules_request_one_run_over_every_source(sources_file: Path, tmp_path: Path) -> None:
    built = definitions(sources_file, tmp_path / "data")
    keys = load_config(str(sources_file)).partition_keys()
    when = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    for name, reconcile in (
        ("sync_image_versions_hourly", False),
        ("reconcile_image_versions_daily", True),
    ):
        schedule = built.resolve_schedule_def(name)
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        with dg.build_schedule_context(scheduled_execution_time=when) as context:
            requests = schedule.evaluate_tick(context).run_requests
        assert requests is not None and len(requests) == 1
        request = requests[0]
        assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (keys[0], keys[-1])
        assert request.run_config["ops"][SYNC_OP]["config"]["reconcile"] is reconcile


def test_a_downstream_asset_queries_the_views_through_the_warehouse_resource(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "data"
    assert run_sync(DataDir(root), server).ok

    @dg.asset(deps=["image_versions_warehouse"])
    def versions_by_status(warehouse: WarehouseResource) -> dict[str, int]:
        sql = "SELECT status, count(*) AS n FROM image_versions GROUP BY 1"
        table = warehouse.arrow(sql)
        assert table.schema.field("n").type == pa.int64()  # DuckDB's type, through Arrow
        arrow = dict(zip(table["status"].to_pylist(), table["n"].to_pylist(), strict=True))
        assert arrow == dict(warehouse.query(sql).rows)
        return arrow

    resources = definitions(sources_file, root).resources
    result = dg.materialize([versions_by_status], instance=instance, resources=resources)
    assert result.success
    truth = Counter(v["ImageVersionStatus"] for v in server.emulator.live_versions(REGION))
    assert result.output_for_node("versions_by_status") == dict(truth)

    @dg.asset
    def writes(warehouse: WarehouseResource) -> None:
        warehouse.query("CREATE TABLE sneaky AS SELECT 1")

    refused = dg.materialize([writes], instance=instance, resources=resources, raise_on_error=False)
    assert not refused.success  # read-only: SELECT statements only

    @dg.asset
    def writes_through_arrow(warehouse: WarehouseResource) -> None:
        warehouse.arrow("CREATE TABLE sneaky AS SELECT 1")

    refused = dg.materialize(
        [writes_through_arrow], instance=instance, resources=resources, raise_on_error=False
    )
    assert not refused.success


def test_a_teams_own_module_adds_a_downstream_asset_without_editing_the_project(
    server: EmulatorServer, sources_file: Path, tmp_path: Path
) -> None:
    """examples/downstream.py, loaded by the dagster CLI from the team's own directory, merges
    its asset with the project's definitions and reads the views as Arrow through the
    warehouse resource."""
    root = tmp_path / "data"
    assert run_sync(DataDir(root), server).ok
    team = tmp_path / "team"
    team.mkdir()
    shutil.copy(ROOT / "examples" / "downstream.py", team / "analytics.py")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        CONFIG_ENV: str(sources_file),
        DATA_DIR_ENV: str(root),
    }
    dagster = Path(sys.executable).parent / "dagster"
    materialised = subprocess.run(
        [
            dagster,
            "asset",
            "materialize",
            "-f",
            "analytics.py",
            "--select",
            "failed_builds_per_image",
        ],
        cwd=team,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert materialised.returncode == 0, materialised.stderr[-2000:]
    failed = Counter(
        v["ImageName"]
        for v in server.emulator.live_versions(REGION)  # the region run_sync synced
        if v["ImageVersionStatus"] in ("CREATE_FAILED", "DELETE_FAILED")
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("failed_builds_per_image"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert metadata["failed_versions"].value == sum(failed.values()) > 0
    assert metadata["images_with_failures"].value == len(failed)


def test_the_core_warnings_reach_the_run_event_log(
    server: EmulatorServer, sources_file: Path, tmp_path: Path
) -> None:
    """With the repository's dagster.yaml `python_logs`, a `pipeline.*` warning during a
    materialisation is in the run's event log."""
    python_logs = yaml.safe_load((ROOT / "dagster.yaml").read_text())["python_logs"]
    root = tmp_path / "data"
    assert run_sync(DataDir(root), server).ok
    (root / "warehouse.duckdb").write_bytes(b"not a database")  # the core rebuilds it, warning
    built = definitions(sources_file, root)
    keys = load_config(str(sources_file)).partition_keys()
    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        result = dg.materialize(
            list(built.assets or ()),
            selection=["image_versions_warehouse"],
            partition_key=keys[0],
            instance=instance,
            resources=built.resources,
        )
        assert result.success
        warnings = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.level == logging.WARNING
        ]
    assert any("rebuilding the unreadable warehouse" in message for message in warnings), warnings


def test_an_unreadable_parquet_file_fails_the_warehouse_asset_with_the_cli_line(
    server: EmulatorServer, sources_file: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The views must be rebuilt and the file they bind to is not Parquet: the run fails,
    without retries, with the line the command line prints, not with DuckDB's error."""
    root = tmp_path / "data"
    data_dir = DataDir(root)
    assert run_sync(data_dir, server).ok
    bad = Path(min(data_dir.version_files()))
    bad.write_bytes(b"PAR1" + bytes(200))
    data_dir.warehouse_path.unlink()
    built = definitions(sources_file, root)
    keys = load_config(str(sources_file)).partition_keys()

    result = dg.materialize(
        list(built.assets or ()),
        selection=[WAREHOUSE_ASSET],
        partition_key=keys[0],
        instance=instance,
        resources=built.resources,
        raise_on_error=False,
    )

    assert not result.success
    failure = result.failure_data_for_node(WAREHOUSE_ASSET)
    assert failure is not None and failure.error is not None
    assert failure.error.cls_name == "Failure"
    line = failure.error.message.strip().removeprefix(f"{dg.Failure.__module__}.Failure: ")
    assert f"{bad.relative_to(root)} in {root} cannot be read" in line
    assert "verify --repair" in line
    cli = run_cli("status", "--data-dir", str(root))
    assert cli.code == 2 and cli.stderr.strip() == f"image-versions: error: {line}"
