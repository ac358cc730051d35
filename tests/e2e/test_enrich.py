"""Opt-in enrichment: DescribeImageVersion + ListAliases of new and changed versions, stored in
`image_version_details/` and read through the `image_version_details` view."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from pipeline.config import load_config
from pipeline.emulator import Emulator, EmulatorServer, random_mutations, seed_catalogue
from pipeline.storage import DataDir
from tests.support import (
    REGION,
    SYNC_OP,
    assert_converged,
    definitions,
    run_cli,
    run_job,
    run_sync,
    stored_states,
    truth,
)

ENRICHMENT_CALLS = ("DescribeImageVersion", "ListAliases")
DETAILS = (
    "SELECT image_name, version, epoch_ms(last_modified_time), base_image, container_image, "
    "job_type, ml_framework, programming_lang, processor, horovod, release_notes, "
    "vendor_guidance, aliases FROM {table}"
)


def enrichment_calls(emulator: Emulator) -> list[tuple[str, dict[str, Any]]]:
    """The calls that describe a version (each names its version)."""
    return [
        (op, params)
        for op, params in emulator.requests()
        if op in ENRICHMENT_CALLS and "Version" in params
    ]


def alias_checks(emulator: Emulator) -> list[str]:
    """The calls that compare an image's aliases on a full listing: a ListAliases of the whole
    image, and a DescribeImageVersion by alias."""
    return [
        op
        for op, params in emulator.requests()
        if op in ENRICHMENT_CALLS and "Version" not in params
    ]


def alias_check_cost(emulator: Emulator, region: str = REGION) -> int:
    """The calls a full listing makes to compare the region's aliases: every page of each
    image's ListAliases, and one DescribeImageVersion per alias."""
    calls = 0
    for name in emulator.image_names(region):
        params: dict[str, Any] = {"ImageName": name, "MaxResults": 100}
        while True:
            page = emulator.call("ListAliases", params, region=region)
            calls += 1 + len(page["SageMakerImageVersionAliases"])
            if "NextToken" not in page:
                break
            params["NextToken"] = page["NextToken"]
    return calls


def source_details(emulator: Emulator, name: str, version: int) -> tuple[Any, ...]:
    """A version's details as the emulator holds them, shaped like a row of `DETAILS`."""
    key = {"ImageName": name, "Version": version}
    described = emulator.call("DescribeImageVersion", key)
    aliases = emulator.call("ListAliases", {**key, "MaxResults": 100})
    return (
        name,
        version,
        round(described["LastModifiedTime"] * 1000),
        *(
            described.get(member)
            for member in (
                "BaseImage",
                "ContainerImage",
                "JobType",
                "MLFramework",
                "ProgrammingLang",
                "Processor",
                "Horovod",
                "ReleaseNotes",
                "VendorGuidance",
            )
        ),
        sorted(aliases["SageMakerImageVersionAliases"]),
    )


def source_truth(emulator: Emulator) -> set[tuple[Any, ...]]:
    return {
        repr(source_details(emulator, v["ImageName"], v["Version"]))
        for v in emulator.live_versions()
    }


def stored(data_dir: DataDir, table: str = "image_version_details") -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        return connection.execute(DETAILS.format(table=table)).fetchall()


def stored_details(data_dir: DataDir) -> set[str]:
    """The details view as comparable strings (lists are not hashable)."""
    return {repr(row) for row in stored(data_dir)}


def live_details(data_dir: DataDir, emulator: Emulator) -> set[str]:
    """The details view's rows of the versions that are live in the source."""
    live = {(v["ImageName"], v["Version"]) for v in emulator.live_versions()}
    return {repr(row) for row in stored(data_dir) if (row[0], row[1]) in live}


def raw_details(data_dir: DataDir) -> list[tuple[Any, ...]]:
    """Every stored details row, straight from the Parquet files."""
    glob = f"{data_dir.details_dir}/*/*/*.parquet"
    return stored(data_dir, f"read_parquet('{glob}')") if data_dir.details_files() else []


def test_an_enriched_sync_describes_each_new_and_changed_version_once(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=41, images=5)
    report = run_sync(data_dir, server, enrich=True)
    assert report.ok, report.failures
    assert report.described == report.new == len(truth(emulator)) > 300
    assert len(raw_details(data_dir)) == report.new
    assert stored_details(data_dir) == source_truth(emulator)
    describes = [p for op, p in enrichment_calls(emulator) if op == "DescribeImageVersion"]
    assert sorted((p["ImageName"], p["Version"]) for p in describes) == sorted(
        (v["ImageName"], v["Version"]) for v in emulator.live_versions()
    )
    assert report.stats.calls["DescribeImageVersion"] == len(describes)

    rng = random.Random(41)
    for round_ in range(3):
        emulator.clock.advance(60)
        random_mutations(emulator, rng, 6)
        # A new alias and job type: UpdateImageVersion stamps the version, so it is listed.
        moved = rng.choice(emulator.live_versions())
        emulator.call(
            "UpdateImageVersion",
            {
                "ImageName": moved["ImageName"],
                "Version": moved["Version"],
                "AliasesToAdd": [f"picked-{round_}"],
                "JobType": "INFERENCE",
            },
        )
        emulator.clear_requests()
        written_before = len(raw_details(data_dir))
        report = run_sync(data_dir, server, enrich=True, reconcile=True)
        assert report.ok, report.failures
        assert report.described == report.new + report.changed > 0
        assert len(raw_details(data_dir)) == written_before + report.described
        live = {(v["ImageName"], v["Version"]) for v in emulator.live_versions()}
        # A reconcile asks for each version it no longer lists before tombstoning it.
        probes = [
            p
            for op, p in enrichment_calls(emulator)
            if op == "DescribeImageVersion" and (p["ImageName"], p["Version"]) not in live
        ]
        assert len(probes) <= report.deleted
        assert len(enrichment_calls(emulator)) == 2 * report.described + len(probes)
        # And to compare the aliases: one ListAliases per image, one describe per alias.
        assert len(alias_checks(emulator)) == alias_check_cost(emulator)
        assert_converged(data_dir, emulator)
        assert live_details(data_dir, emulator) == source_truth(emulator)


def test_a_no_change_enriched_sync_makes_no_enrichment_calls(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=42, images=6)
    run_sync(data_dir, server, enrich=True)
    server.emulator.clear_requests()
    report = run_sync(data_dir, server, enrich=True)
    assert report.ok and (report.new, report.changed, report.described) == (0, 0, 0)
    assert enrichment_calls(server.emulator) == []
    assert report.stats.total_calls == len(server.emulator.requests())


def test_enrichment_is_off_by_default(server: EmulatorServer, data_dir: DataDir) -> None:
    seed_catalogue(server.emulator, seed=43, images=4)
    report = run_sync(data_dir, server)
    assert report.ok and report.new > 0 and report.described == 0
    assert enrichment_calls(server.emulator) == []
    assert data_dir.details_files() == []
    assert stored(data_dir) == []  # the view exists, empty


def test_a_version_deleted_before_it_is_described_is_skipped(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=44, images=4)
    victim = emulator.live_versions()[0]
    key = {"ImageName": victim["ImageName"], "Version": victim["Version"]}

    def delete_first(operation: str, params: dict[str, Any]) -> None:
        if operation == "DescribeImageVersion" and params == key:
            emulator.delete_image_version(victim["ImageName"], victim["Version"])

    emulator.before_request = delete_first
    report = run_sync(data_dir, server, enrich=True)
    assert report.ok, report.failures
    assert report.details_vanished == 1
    assert report.described == report.new - 1
    assert stored_details(data_dir) == source_truth(emulator)
    assert not [row for row in stored(data_dir) if row[:2] == tuple(key.values())]


def test_a_failing_describe_fails_the_image_and_commits_nothing_of_it(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=45, images=4)
    emulator.faults.denied_regions = frozenset({REGION})
    emulator.faults.operations = frozenset({"DescribeImageVersion"})
    report = run_sync(data_dir, server, enrich=True)
    failed = {failure.image_name for failure in report.failures}
    assert failed == {v["ImageName"] for v in emulator.live_versions()}
    assert all("AccessDenied" in failure.reason for failure in report.failures)
    assert data_dir.version_files() == [] and data_dir.details_files() == []
    emulator.faults.denied_regions = frozenset()
    report = run_sync(data_dir, server, enrich=True)
    assert report.ok and report.described == report.new == len(truth(emulator))
    assert stored_details(data_dir) == source_truth(emulator)


def test_aliases_are_read_through_every_page(server: EmulatorServer, data_dir: DataDir) -> None:
    emulator = server.emulator
    emulator.create_image("many")
    aliases = [f"a{n:03d}" for n in range(230)]
    emulator.create_image_version("many", aliases=aliases)
    report = run_sync(data_dir, server, enrich=True)
    assert report.ok and report.stats.calls["ListAliases"] == 3
    assert [row[-1] for row in stored(data_dir)] == [aliases]
    pages = [p for op, p in enrichment_calls(emulator) if op == "ListAliases"]
    assert [p.get("MaxResults") for p in pages] == [100, 100, 100]
    assert ["NextToken" in p for p in pages] == [False, True, True]


def test_reconcile_with_enrich_backfills_details_of_versions_synced_before(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=46, images=5)
    run_sync(data_dir, server)
    assert run_sync(data_dir, server, enrich=True).described == 0  # nothing changed
    report = run_sync(data_dir, server, enrich=True, reconcile=True)
    assert report.ok and (report.new, report.changed) == (0, 0)
    assert report.described == len(truth(emulator))
    assert stored_details(data_dir) == source_truth(emulator)
    # Once every state has details, a full listing describes nothing more.
    emulator.clear_requests()
    assert run_sync(data_dir, server, enrich=True, full_refresh=True).described == 0
    assert enrichment_calls(emulator) == []
    assert len(alias_checks(emulator)) == alias_check_cost(emulator)
    # A state written while enrichment was off gets its details on the next backfill.
    emulator.clock.advance(60)
    changed = emulator.live_versions()[0]
    emulator.update_image_version(changed["ImageName"], changed["Version"], status="CREATING")
    assert run_sync(data_dir, server).changed == 1
    report = run_sync(data_dir, server, enrich=True, reconcile=True)
    assert report.described == 1 and report.changed == 0
    assert stored_details(data_dir) == source_truth(emulator)


def test_compaction_keeps_the_details_view_equal(server: EmulatorServer, data_dir: DataDir) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=47, images=4)
    rng = random.Random(47)
    for _ in range(4):
        run_sync(data_dir, server, enrich=True)
        emulator.clock.advance(30)
        random_mutations(emulator, rng, 4)
    before = sorted(map(repr, stored(data_dir)))
    files = len(data_dir.details_files()) + len(data_dir.version_files())
    runs = len(data_dir.sync_run_files())
    assert data_dir.compact()[0] == files + runs
    assert len(data_dir.details_files()) == len({p.parent for p in data_dir.details_files()})
    assert len(data_dir.details_files()) + len(data_dir.version_files()) < files
    assert sorted(map(repr, stored(data_dir))) == before


def test_the_cli_flag_and_the_sources_file_turn_enrichment_on(
    server: EmulatorServer, tmp_path: Path
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=48, images=3)
    name = emulator.image_names()[0]
    config = tmp_path / "image-versions.toml"
    data = tmp_path / "data"

    def sync_with(enrich_key: str, *flags: str) -> str:
        config.write_text(f'[sources.emu]\nendpoint_url = "{server.url}"\n{enrich_key}\n')
        result = run_cli("sync", "--data-dir", str(data), "--config", str(config), *flags)
        assert result.code == 0, result.stderr
        return result.stdout

    assert "details:" not in sync_with("enrich = false")
    emulator.create_image_version(name)
    assert "details: 1 versions described (1 DescribeImageVersion, 1 ListAliases calls), 0 " in (
        sync_with("", "--enrich")
    )
    emulator.create_image_version(name)
    assert "details: 1 versions described" in sync_with("enrich = true")
    query = run_cli(
        "query", "SELECT count(*) AS n FROM image_version_details", "--data-dir", str(data)
    )
    assert query.code == 0 and "\n2\n" in query.stdout
    config.write_text(f'[sources.emu]\nendpoint_url = "{server.url}"\nenrich = "yes"\n')
    bad = run_cli("sync", "--data-dir", str(data), "--config", str(config))
    assert bad.code == 2 and "enrich must be true or false" in bad.stderr


def test_details_that_cannot_be_written_keep_the_state_behind_them(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=49, images=5)
    run_sync(data_dir, server, enrich=True)
    emulator.clock.advance(60)
    random_mutations(emulator, random.Random(49), 6)
    state_before = stored_states(data_dir)
    version_files = len(data_dir.version_files())
    # A file where the details' partition directory belongs: the details write fails late,
    # after the versions are written (a file in the layout's top level is refused up front).
    (partition,) = {Path(path).parents[1] for path in data_dir.details_files()}
    partition.rename(data_dir.root / "moved-away")
    partition.write_text("a file where the details partition belongs")
    with pytest.raises(OSError):
        run_sync(data_dir, server, enrich=True)
    assert len(data_dir.version_files()) > version_files  # the versions were written first,
    assert stored_states(data_dir) == state_before  # but the state waits for the details too
    partition.unlink()
    (data_dir.root / "moved-away").rename(partition)
    report = run_sync(data_dir, server, enrich=True, reconcile=True)
    assert report.ok and report.described > 0
    assert_converged(data_dir, emulator)
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        missing = connection.execute(
            "SELECT count(*) FROM image_versions ANTI JOIN image_version_details "
            "USING (account_id, region, image_name, version, last_modified_time)"
        ).fetchall()
    assert missing == [(0,)]
    assert live_details(data_dir, emulator) == source_truth(emulator)


@pytest.mark.dagster
def test_the_dagster_op_enriches_when_its_config_says_so(
    server: EmulatorServer, sources_file: Path, tmp_path: Path
) -> None:
    built = definitions(sources_file, tmp_path / "data")
    keys = load_config(str(sources_file)).partition_keys()
    with dg.instance_for_test() as instance:
        plain = run_job(built, instance, keys[:1])
        assert plain.success and enrichment_calls(server.emulator) == []
        result = run_job(built, instance, keys[:1], {"enrich": True, "reconcile": True})
    assert result.success
    (versions,) = [
        m
        for m in result.asset_materializations_for_node(SYNC_OP)
        if m.asset_key.to_user_string() == "image_versions"
    ]
    described = len(server.emulator.live_versions(REGION))
    assert versions.metadata["versions_described"].value == described
    by_alias = alias_checks(server.emulator).count("DescribeImageVersion")
    assert by_alias > 0  # the reconcile compares the aliases too
    assert versions.metadata["describe_image_version_calls"].value == described + by_alias
    assert len(stored(DataDir(tmp_path / "data"))) == described


def test_a_large_backfill_is_committed_in_batches(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=50, images=30)
    run_sync(data_dir, server)
    report = run_sync(data_dir, server, enrich=True, reconcile=True, flush_rows=20)
    assert report.ok and report.rows_written == 0 and report.described > 300
    # Details alone fill batches: more than one file in some month of the backfill.
    assert len(data_dir.details_files()) > len({p.parent for p in data_dir.details_files()})
    assert stored_details(data_dir) == source_truth(server.emulator)


def test_verify_finds_and_quarantines_a_corrupt_details_file(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=53, images=3)
    run_sync(data_dir, server, enrich=True)
    damaged = Path(data_dir.details_files()[0])
    damaged.write_bytes(damaged.read_bytes()[:40])
    stray = damaged.parent / "notes.txt"
    stray.write_text("not data")

    found = run_cli("verify", "--data-dir", str(data_dir.root))
    assert found.code == 1
    assert f"unreadable file: {damaged}" in found.stdout
    assert f"stray file: {stray}" in found.stdout

    repaired = run_cli("verify", "--repair", "--data-dir", str(data_dir.root))
    assert repaired.code == 1 and not damaged.exists() and not stray.exists()
    assert run_cli("verify", "--data-dir", str(data_dir.root)).code == 0
    # The state went with the damaged file: a full refresh with enrichment restores the details.
    run_sync(data_dir, server, enrich=True, full_refresh=True)
    assert stored_details(data_dir) == source_truth(server.emulator)


ALIAS_HISTORY = (
    "SELECT version, epoch_ms(valid_from), epoch_ms(valid_to) FROM image_version_aliases "
    "WHERE image = 'lab' AND alias = 'stable' ORDER BY valid_from"
)


def alias_history(data_dir: DataDir) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        return connection.execute(ALIAS_HISTORY).fetchall()


def sync_started_at(data_dir: DataDir) -> list[int]:
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        rows = connection.execute("SELECT epoch_ms(started_at) FROM sync_runs ORDER BY 1")
        return [started for (started,) in rows.fetchall()]


def test_an_alias_move_that_leaves_last_modified_time_alone_is_found_by_an_enriched_reconcile(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """Whether an alias change moves LastModifiedTime is undocumented: with the emulator
    answering no, an incremental sync cannot see a move; a reconcile compares the aliases, and
    `image_version_aliases` says which version `stable` named when."""
    emulator = server.emulator
    emulator.modes.updates_stamp = False
    emulator.create_image("lab")
    for aliases in (["stable"], [], ["beta"]):
        emulator.create_image_version("lab", aliases=aliases)
    assert run_sync(data_dir, server, enrich=True).described == 3

    emulator.clock.advance(60)
    emulator.call(
        "UpdateImageVersion", {"ImageName": "lab", "Version": 1, "AliasesToDelete": ["stable"]}
    )
    emulator.call(
        "UpdateImageVersion", {"ImageName": "lab", "Version": 2, "AliasesToAdd": ["stable"]}
    )
    emulator.clear_requests()
    assert run_sync(data_dir, server, enrich=True).described == 0  # nothing listed as changed
    assert alias_checks(emulator) == []  # an incremental sync does not compare aliases
    [(version, _, until)] = alias_history(data_dir)
    assert (version, until) == (1, None)

    emulator.clear_requests()
    report = run_sync(data_dir, server, enrich=True, reconcile=True)
    assert report.ok and (report.new, report.changed, report.described) == (0, 0, 2)
    # One ListAliases of the image, one DescribeImageVersion per alias (stable, beta).
    assert sorted(alias_checks(emulator)) == ["DescribeImageVersion"] * 2 + ["ListAliases"]
    assert live_details(data_dir, emulator) == source_truth(emulator)
    first, moved = sync_started_at(data_dir)[0], sync_started_at(data_dir)[-1]
    [(v1, since, until), (v2, moved_at, still)] = alias_history(data_dir)
    assert (v1, v2, still) == (1, 2, None)
    assert since >= first and until == moved_at >= moved

    emulator.clock.advance(60)
    emulator.call(
        "UpdateImageVersion", {"ImageName": "lab", "Version": 2, "AliasesToDelete": ["stable"]}
    )
    emulator.delete_image_version("lab", 2)
    assert run_sync(data_dir, server, enrich=True, reconcile=True).ok
    *_, (last, _, ended) = alias_history(data_dir)
    assert last == 2 and ended is not None  # the version's tombstone ends its alias
    emulator.clear_requests()
    assert run_sync(data_dir, server, enrich=True, reconcile=True).described == 0
