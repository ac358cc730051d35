"""Opt-in roles and tags (`tags`): each image's RoleArn (DescribeImage) and the tags of images
and versions (ListTags) as map columns of `images` and `image_version_details`, through real
boto3 against the emulator; the calls stay at the floor when it is off; data dirs written
before the columns existed keep working (views, compaction, verify), locally and on S3."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.emulator import ACCESS_DENIED, ApiError, Emulator, EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from pipeline.verify import find_problems
from pipeline.warehouse import run_query
from tests.support import (
    REGION,
    SYNC_OP,
    assert_converged,
    definitions,
    run_cli,
    run_job,
    run_sync,
)
from tests.support import sources_file as write_sources_file

VERSIONS_PER_TEAM = """
SELECT coalesce(d.tags['team'], i.tags['team'], '(untagged)') AS team, count(*) AS versions
FROM image_versions AS v JOIN images AS i USING (account_id, region, image_name)
LEFT JOIN image_version_details AS d USING (account_id, region, image_name, version)
GROUP BY team ORDER BY versions DESC, team
"""
"""The documented example (README, docs/enrichment.md): live versions per team tag."""

DEPTH_CALLS = ("DescribeImage", "ListTags")


def calls(emulator: Emulator) -> Counter[str]:
    return Counter(op for op, _ in emulator.requests())


def source_images(emulator: Emulator) -> dict[str, tuple[str, dict[str, str]]]:
    """image -> (RoleArn, tags), as the emulator holds them."""
    found = {}
    for name in emulator.image_names():
        described = emulator.call("DescribeImage", {"ImageName": name})
        found[name] = (described["RoleArn"], dict(emulator.resource_tags(described["ImageArn"])))
    return found


def stored_images(data_dir: DataDir) -> dict[str, tuple[str | None, dict[str, str] | None]]:
    rows = run_query(data_dir, "SELECT image_name, role_arn, tags FROM images").rows
    return {name: (role, tags) for name, role, tags in rows}


def source_version_tags(emulator: Emulator) -> dict[tuple[str, int], dict[str, str]]:
    return {
        (v["ImageName"], v["Version"]): dict(emulator.resource_tags(v["ImageVersionArn"]))
        for v in emulator.live_versions()
    }


def stored_version_tags(data_dir: DataDir) -> dict[tuple[str, int], dict[str, str] | None]:
    rows = run_query(
        data_dir,
        "SELECT image_name, version, tags FROM image_version_details "
        "JOIN image_versions USING (account_id, region, image_name, version)",
    ).rows
    return {(name, version): tags for name, version, tags in rows}


def versions_per_team(emulator: Emulator) -> list[tuple[str, int]]:
    """The example query's answer, from the emulator."""
    image_team = {name: tags.get("team") for name, (_, tags) in source_images(emulator).items()}
    counted = Counter(
        tags.get("team") or image_team[name] or "(untagged)"
        for (name, _), tags in source_version_tags(emulator).items()
    )
    return sorted(counted.items(), key=lambda item: (-item[1], item[0]))


LISTINGS = ("ListImages", "ListImageVersions")


def test_with_tags_off_the_calls_stay_at_the_floor(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=61, images=8)
    tagged = run_sync(DataDir.at(str(tmp_path / "tagged")), server, tags=True)
    assert tagged.ok, tagged.failures
    with_tags = calls(emulator)
    emulator.clear_requests()
    first = run_sync(data_dir, server, enrich=True)
    assert first.ok, first.failures
    without = calls(emulator)
    assert not without.keys() & set(DEPTH_CALLS)
    # The same listings either way: tags add calls beside them, never to them.
    assert [without[op] for op in LISTINGS] == [with_tags[op] for op in LISTINGS]
    assert with_tags - without == Counter({"ListTags": 8 + first.described, "DescribeImage": 8})
    assert stored_images(data_dir) and all(
        depth == (None, None) for depth in stored_images(data_dir).values()
    )
    assert all(tags is None for tags in stored_version_tags(data_dir).values())
    emulator.clear_requests()
    again = run_sync(data_dir, server)
    assert again.ok and (again.new, again.changed) == (0, 0)
    # Invariant 7: one ListImages page, one ListImageVersions per image, nothing else.
    assert calls(emulator) == Counter({"ListImages": 1, "ListImageVersions": 8})


def test_a_tagged_sync_records_roles_and_tags_at_one_call_per_image_and_version(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=62, images=8)
    versions = len(emulator.live_versions())
    report = run_sync(data_dir, server, tags=True)
    assert report.ok, report.failures
    assert report.enriched and report.described == versions
    assert stored_images(data_dir) == source_images(emulator)
    assert stored_version_tags(data_dir) == source_version_tags(emulator)
    made = calls(emulator)
    assert (made["DescribeImage"], made["ListTags"]) == (8, 8 + versions)
    assert made["ListImageVersions"] == sum(
        -(-len([v for v in emulator.live_versions() if v["ImageName"] == name]) // 100) or 1
        for name in emulator.image_names()
    )

    emulator.clear_requests()
    again = run_sync(data_dir, server, tags=True)
    assert again.ok and (again.new, again.changed, again.described) == (0, 0, 0)
    # Unchanged images keep their stored role; their tags are read again (no stamp moves).
    assert calls(emulator) == Counter({"ListImages": 1, "ListImageVersions": 8, "ListTags": 8})
    assert stored_images(data_dir) == source_images(emulator)


def test_tag_changes_are_found_by_the_next_sync_for_images_and_by_a_reconcile_for_versions(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=63, images=6)
    assert run_sync(data_dir, server, tags=True).ok
    name = emulator.image_names()[0]
    image_arn = emulator.call("DescribeImage", {"ImageName": name})["ImageArn"]
    emulator.tag_resource(image_arn, {"team": "moved", "cost-centre": "42"})
    version = next(v for v in emulator.live_versions() if v["ImageVersionStatus"] == "CREATED")
    emulator.tag_resource(version["ImageVersionArn"], {"team": "retagged"})
    emulator.clock.advance(60)

    report = run_sync(data_dir, server, tags=True)
    assert report.ok and report.described == 0
    assert stored_images(data_dir) == source_images(emulator)
    key = (version["ImageName"], version["Version"])
    assert stored_version_tags(data_dir)[key] != {"team": "retagged"}  # no stamp moved

    emulator.clear_requests()
    report = run_sync(data_dir, server, tags=True, reconcile=True)
    assert report.ok, report.failures
    assert report.described == 1 and (report.new, report.changed) == (0, 0)
    assert stored_version_tags(data_dir) == source_version_tags(emulator)
    live = len(emulator.live_versions())
    images = len(emulator.image_names())
    made = calls(emulator)
    # A reconcile re-reads every image's role and every live version's tags, once each.
    assert (made["DescribeImage"], made["ListTags"]) == (images, images + live)
    assert_converged(data_dir, emulator)


def test_the_versions_per_team_example_counts_the_tags_of_real_files(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=64, images=20)
    assert run_sync(data_dir, server, tags=True).ok
    answer = run_query(data_dir, VERSIONS_PER_TEAM).rows
    assert answer == versions_per_team(emulator)
    teams = {team for team, _ in answer}
    assert "platform" in teams and len(teams) >= 3


def test_the_sources_file_key_and_the_flag_turn_tags_on(
    server: EmulatorServer, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=65, images=4)
    config = write_sources_file(
        tmp_path,
        f'[sources.team]\nregions = ["{REGION}"]\nendpoint_url = "{server.url}"\ntags = true\n',
    )
    (source,) = load_config(str(config)).sources
    assert source.tags and not source.enrich
    data = tmp_path / "data"
    result = run_cli("sync", "--config", str(config), "--data-dir", str(data))
    assert result.code == 0, result.stderr
    assert "ListTags" in result.stdout + result.stderr
    assert stored_images(DataDir.at(str(data))) == source_images(server.emulator)

    flagged = tmp_path / "flagged"
    env = {"AWS_ENDPOINT_URL_SAGEMAKER": server.url}
    result = run_cli("sync", "--tags", "--region", REGION, "--data-dir", str(flagged), env=env)
    assert result.code == 0, result.stderr
    shown = run_cli("query", VERSIONS_PER_TEAM, "--data-dir", str(flagged), "--format", "csv")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines()[1:] == [
        f"{team},{count}" for team, count in versions_per_team(server.emulator)
    ]


# ------------------------------------------------------------ data dirs from before the columns


def as_before_the_columns(data_dir: DataDir) -> int:
    """Rewrite every images and details file as a release before `role_arn` and `tags`
    wrote it (the columns dropped); how many files."""
    filesystem = data_dir.store.filesystem
    files = data_dir.image_files() + data_dir.details_files()
    for path in files:
        table = pq.read_table(str(path), filesystem=filesystem)
        old = table.drop_columns([n for n in ("role_arn", "tags") if n in table.column_names])
        pq.write_table(old, str(path), filesystem=filesystem)
    return len(files)


def every_view(data_dir: DataDir) -> dict[str, list[Any]]:
    names = ("images", "image_version_details", "image_version_aliases", "image_versions")
    return {
        name: sorted(map(repr, run_query(data_dir, f"SELECT * FROM {name}").rows)) for name in names
    }


def check_old_and_new_files_together(data_dir: DataDir, server: EmulatorServer) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=66, images=5)
    assert run_sync(data_dir, server, enrich=True).ok
    assert as_before_the_columns(data_dir) >= 2
    # Only old files: every view reads, the new columns as nulls.
    assert set(stored_images(data_dir).values()) == {(None, None)}
    assert set(map(repr, stored_version_tags(data_dir).values())) == {"None"}
    assert find_problems(data_dir) == []

    for name in emulator.image_names()[:3]:
        emulator.create_image_version(name)
    emulator.clock.advance(60)
    report = run_sync(data_dir, server, tags=True)
    assert report.ok, report.failures
    assert report.described == 3
    # Old details files and new ones side by side: each version as its file has it.
    version_tags = stored_version_tags(data_dir)
    assert sum(tags is not None for tags in version_tags.values()) == 3
    assert stored_images(data_dir) == source_images(emulator)
    assert find_problems(data_dir) == []

    before = every_view(data_dir)
    data_dir.compact(min_files=1)
    assert every_view(data_dir) == before
    assert find_problems(data_dir) == []
    for path in data_dir.details_files():
        schema = pq.read_schema(str(path), filesystem=data_dir.store.filesystem)
        assert "tags" in schema.names  # compaction wrote the current schema

    report = run_sync(data_dir, server, tags=True, reconcile=True)
    assert report.ok, report.failures
    assert stored_version_tags(data_dir) == source_version_tags(emulator)  # backfilled
    assert_converged_anywhere(data_dir, emulator)


def assert_converged_anywhere(data_dir: DataDir, emulator: Emulator) -> None:
    rows = run_query(data_dir, "SELECT image_name, version FROM image_versions").rows
    assert sorted(rows) == sorted((v["ImageName"], v["Version"]) for v in emulator.live_versions())


def test_a_local_data_dir_from_before_the_columns_keeps_working(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    check_old_and_new_files_together(data_dir, server)
    assert_converged(data_dir, server.emulator)


@pytest.mark.s3
def test_an_s3_data_dir_from_before_the_columns_keeps_working(
    server: EmulatorServer, s3_dir: DataDir
) -> None:
    check_old_and_new_files_together(s3_dir, server)


def test_a_denied_or_malformed_list_tags_fails_its_image_alone_and_keeps_what_was_stored(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=67, images=5)
    assert run_sync(data_dir, server, tags=True).ok
    kept = stored_images(data_dir)
    denied, garbled = emulator.image_names()[:2]
    arns = {
        emulator.call("DescribeImage", {"ImageName": name})["ImageArn"]: name
        for name in (denied, garbled)
    }
    for name in emulator.image_names():
        arn = emulator.call("DescribeImage", {"ImageName": name})["ImageArn"]
        emulator.tag_resource(arn, {"team": "garble-me" if name == garbled else "changed"})

    def refuse(operation: str, params: dict[str, Any]) -> None:
        if operation == "ListTags" and arns.get(params["ResourceArn"]) == denied:
            raise ApiError(ACCESS_DENIED, "not authorized to perform: sagemaker:ListTags")

    def garble(operation: str, response: dict[str, Any]) -> dict[str, Any]:
        if operation == "ListTags" and {"Key": "team", "Value": "garble-me"} in response["Tags"]:
            return {"Tags": [{"Key": "team"}]}
        return response

    emulator.before_request, emulator.rewrite_response = refuse, garble
    report = run_sync(data_dir, server, tags=True)
    failed = {failure.image_name: failure.reason for failure in report.failures}
    assert set(failed) == {denied, garbled}
    assert "AccessDenied" in failed[denied] and "MalformedRecord" in failed[garbled]
    now = stored_images(data_dir)
    assert {name: now[name] for name in (denied, garbled)} == {
        name: kept[name] for name in (denied, garbled)
    }
    others = set(now) - {denied, garbled}
    assert others and all((now[name][1] or {}).get("team") == "changed" for name in others)
    assert_converged(data_dir, emulator)  # the versions of every image are synced


@pytest.mark.dagster
def test_the_dagster_op_reads_roles_and_tags_when_its_config_says_so(
    server: EmulatorServer, sources_file: Path, tmp_path: Path
) -> None:
    import dagster as dg

    built = definitions(sources_file, tmp_path / "data")
    keys = [key for key in load_config(str(sources_file)).partition_keys() if REGION in key]
    with dg.instance_for_test() as instance:
        plain = run_job(built, instance, keys)
        assert plain.success and not calls(server.emulator).keys() & set(DEPTH_CALLS)
        server.emulator.clear_requests()
        result = run_job(built, instance, keys, {"tags": True})
    assert result.success
    (versions,) = [
        m
        for m in result.asset_materializations_for_node(SYNC_OP)
        if m.asset_key.to_user_string() == "image_versions"
    ]
    images = len(server.emulator.image_names())
    made = calls(server.emulator)
    assert versions.metadata["list_tags_calls"].value == made["ListTags"] == images
    assert versions.metadata["describe_image_calls"].value == made["DescribeImage"] == images
    assert stored_images(DataDir(tmp_path / "data")) == source_images(server.emulator)


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "unstamped"])
def test_a_changed_role_is_read_when_the_image_is_stamped_else_by_the_reconcile(
    server: EmulatorServer, data_dir: DataDir, stamped: bool
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=68, images=5)
    assert run_sync(data_dir, server, tags=True).ok
    emulator.modes.updates_stamp = stamped
    name = emulator.image_names()[1]
    new_role = "arn:aws:iam::123456789012:role/moved-images"
    emulator.call("UpdateImage", {"ImageName": name, "RoleArn": new_role})
    emulator.clock.advance(60)
    emulator.clear_requests()

    assert run_sync(data_dir, server, tags=True).ok
    described = [p["ImageName"] for op, p in emulator.requests() if op == "DescribeImage"]
    assert described == ([name] if stamped else [])  # only a moved stamp is described
    assert (stored_images(data_dir)[name][0] == new_role) is stamped

    assert run_sync(data_dir, server, tags=True, reconcile=True).ok
    assert stored_images(data_dir) == source_images(emulator)
