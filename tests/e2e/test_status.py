"""`image-versions status`: one row per target by default, whose figures are the views'; one
row per image with --images; both narrowed by --source, --account and --image."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import DEFAULT_ACCOUNT_ID, EmulatorServer, seed_catalogue
from pipeline.model import account_key
from pipeline.ratelimit import Learned
from pipeline.state import save_learned_rate
from pipeline.storage import DataDir
from tests.support import OTHER_REGION, REGION, run_cli, sources_file

DENIED_REGION = "us-west-2"
"""A region the emulator refuses from the start: its target never reaches an account."""


def status(data_dir: DataDir, *args: str) -> Any:
    result = run_cli("status", "--data-dir", str(data_dir.root), "--json", *args)
    assert result.code == 0 and not result.stderr, result.stderr
    return json.loads(result.stdout)


def query(data_dir: DataDir, sql: str) -> list[dict[str, Any]]:
    result = run_cli("query", sql, "--data-dir", str(data_dir.root), "--format", "json")
    assert result.code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.fixture
def synced(server: EmulatorServer, data_dir: DataDir, tmp_path: Path) -> DataDir:
    """Two syncs of three targets: one always denied, one denied at the second sync only (so
    its last sync failed, its data stays), one that succeeds twice, with a learned rate."""
    emulator = server.emulator
    seed_catalogue(emulator, seed=61, images=5, region=REGION)
    seed_catalogue(emulator, seed=62, images=3, region=OTHER_REGION)
    regions = ", ".join(f'"{region}"' for region in (REGION, OTHER_REGION, DENIED_REGION))
    sources = sources_file(
        tmp_path, f'[sources.emu]\nendpoint_url = "{server.url}"\nregions = [{regions}]\n'
    )
    sync = ("sync", "--config", str(sources), "--data-dir", str(data_dir.root))
    emulator.faults.denied_regions = frozenset({DENIED_REGION})
    assert run_cli(*sync).code == 1
    emulator.faults.denied_regions = frozenset({DENIED_REGION, OTHER_REGION})
    emulator.create_image("added-later")
    assert run_cli(*sync).code == 1
    save_learned_rate(data_dir, account_key(DEFAULT_ACCOUNT_ID, REGION), Learned(7.5, 3.0))
    return data_dir


def test_status_shows_one_row_per_target_with_the_views_figures(
    synced: DataDir, server: EmulatorServer
) -> None:
    runs = query(synced, "SELECT * FROM sync_runs")
    emulator = server.emulator
    rows = {(row["source"], row["region"]): row for row in status(synced)}
    assert list(rows) == [("emu", OTHER_REGION), ("emu", REGION), ("emu", DENIED_REGION)]

    for (source, region), row in rows.items():
        mine = sorted((r for r in runs if r["region"] == region), key=lambda r: r["finished_at"])
        failed = [r for r in mine if not r["ok"]]
        assert row["last_sync_at"] == mine[-1]["finished_at"]
        assert row["last_sync_ok"] == mine[-1]["ok"]
        assert row["last_failure_at"] == (failed[-1]["finished_at"] if failed else None)
        assert row["last_failure"] == (failed[-1]["error"] if failed else None)
        assert (source, len(mine)) == ("emu", 2)

    live = {region: len(emulator.live_versions(region)) for region in (REGION, OTHER_REGION)}
    for region in (REGION, OTHER_REGION):
        views = query(
            synced,
            "SELECT (SELECT count(*) FROM sync_state WHERE NOT is_deleted AND region = "
            f"'{region}') AS images, (SELECT count(*) FROM image_versions WHERE region = "
            f"'{region}') AS versions",
        )
        row = rows["emu", region]
        assert [{"images": row["images"], "versions": row["versions"]}] == views
        assert row["account_id"] == DEFAULT_ACCOUNT_ID and row["versions"] == live[region]
        assert row["images"] == len(emulator.image_names(region))
    assert rows["emu", REGION]["learned_rps"] == 7.5
    assert rows["emu", REGION]["last_sync_ok"] is True
    assert rows["emu", REGION]["last_failure"] is None
    # Denied at the second sync: the figures of the first stay, the failure is the second's.
    other = rows["emu", OTHER_REGION]
    assert other["last_sync_ok"] is False and "AccessDeniedException" in other["last_failure"]
    assert other["learned_rps"] is None
    # Never reached an account: nothing to count, only its failure.
    denied = rows["emu", DENIED_REGION]
    assert (denied["account_id"], denied["images"], denied["versions"]) == (None, 0, 0)
    assert denied["last_sync_ok"] is False and "AccessDeniedException" in denied["last_failure"]


def test_status_table_has_a_line_per_target_and_filters_narrow_it(synced: DataDir) -> None:
    table = run_cli("status", "--data-dir", str(synced.root))
    assert table.code == 0, table.stderr
    header, rule, *rows, count = table.stdout.splitlines()
    assert header.split()[:5] == ["source", "region", "account_id", "images", "versions"]
    assert set(rule) == {"-", " "}
    assert [row.split()[:2] for row in rows] == [
        ["emu", OTHER_REGION],
        ["emu", REGION],
        ["emu", DENIED_REGION],
    ]
    assert count == "(3 rows)"

    assert status(synced, "--source", "other") == []
    by_account = status(synced, "--source", "emu", "--account", DEFAULT_ACCOUNT_ID)
    assert {row["region"] for row in by_account} == {REGION, OTHER_REGION}


def test_status_images_keeps_the_per_image_rows_and_filters_them(synced: DataDir) -> None:
    states = query(synced, "SELECT image_name, region FROM sync_state")
    images = status(synced, "--images")
    assert list(images[0]) == [
        "source",
        "account_id",
        "region",
        "image_name",
        "watermark",
        "last_synced_at",
        "version_count",
        "is_deleted",
        "last_error",
    ]
    assert sorted((r["image_name"], r["region"]) for r in images) == sorted(
        (r["image_name"], r["region"]) for r in states
    )

    pattern = "[a-m]*"
    matching = status(synced, "--images", "--image", pattern, "--account", DEFAULT_ACCOUNT_ID)
    expected = sorted(
        r["image_name"] for r in states if fnmatch.fnmatchcase(r["image_name"], pattern)
    )
    assert sorted(r["image_name"] for r in matching) == expected and expected
    assert status(synced, "--images", "--image", "added-later") == [
        row for row in images if row["image_name"] == "added-later"
    ]

    alone = run_cli("status", "--data-dir", str(synced.root), "--image", "a*")
    assert alone.code == 2 and not alone.stdout
    assert alone.stderr.strip() == (
        "image-versions: error: --image narrows the per-image rows: add --images"
    )
