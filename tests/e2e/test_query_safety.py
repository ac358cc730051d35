"""`query` and `status` only read the dataset; derived and damaged files fail safe.

`query` accepts what DuckDB's parser calls SELECT and reads no file outside the data dir;
`query` and `status` write nothing and ignore `warehouse.duckdb`, which a sync rebuilds when it
is unreadable; a damaged Parquet file stops a reconciling sync with one line naming it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path, PurePath

import duckdb
import pytest

from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from pipeline.warehouse import VIEW_NAMES, connect, run_query
from tests.support import REGION, CliResult, live_rows, run_cli, run_sync, truth

SECRET = "not-for-query-eyes"


def synced(server: EmulatorServer, data_dir: DataDir, **options: bool) -> None:
    seed_catalogue(server.emulator, seed=23, images=3, region=REGION)
    report = run_sync(data_dir, server, **options)
    assert report.ok, report.failures


def snapshot(root: PurePath) -> dict[str, bytes | None]:
    """Every entry under `root`: a file's bytes, None for a directory."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(Path(root).rglob("*"))
    }


def one_line_error(result: CliResult) -> str:
    """The single stderr line of a run that exited 2."""
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def cli_sync(server: EmulatorServer, data_dir: DataDir, *flags: str) -> CliResult:
    root = str(data_dir.root)
    return run_cli("sync", "--data-dir", root, "--endpoint-url", server.url, *flags)


def query_json(data_dir: DataDir, sql: str) -> list[dict[str, object]]:
    result = run_cli("query", sql, "--data-dir", str(data_dir.root), "--format", "json")
    assert result.code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


# (kind, SQL with {root} the data dir, {target} a path the statement would create, {secret} a
# file outside the data dir, {outside} the directory holding it; what the error line says)
REFUSED = [
    (
        "copy into the dataset",
        "COPY (SELECT * FROM image_versions) TO "
        "'{root}/image_versions/account_region=123456789012.us-east-1/month=2026-03/"
        "planted.parquet' (FORMAT parquet)",
        "not COPY",
    ),
    ("copy outside", "COPY (SELECT * FROM image_versions) TO '{target}'", "not COPY"),
    ("export", "EXPORT DATABASE '{target}'", "not EXPORT"),
    ("set", "SET temp_directory = '{target}'", "not SET"),
    ("pragma", "PRAGMA import_database('{target}')", "not PRAGMA"),
    ("install", "INSTALL httpfs", "not LOAD"),
    ("attach", "ATTACH '{target}' AS planted", "not ATTACH"),
    ("create", "CREATE TABLE planted AS SELECT * FROM image_versions", "not CREATE"),
    ("second statement", "SELECT 1; COPY (SELECT 1) TO '{target}'", "not COPY"),
    # A PIVOT without an IN list makes any statement MULTI: what holds it decides.
    ("copy of a pivot", "COPY (PIVOT image_versions ON status) TO '{target}'", "not COPY"),
    ("create from a pivot", "CREATE TABLE planted AS PIVOT image_versions ON status", "not CREATE"),
    ("explain analyze", "EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'", "not EXPLAIN"),
    ("read_text outside", "SELECT * FROM read_text('{secret}')", "Permission Error"),
    ("read_csv outside", "SELECT * FROM read_csv('{secret}')", "Permission Error"),
    ("glob outside", "SELECT * FROM glob('{outside}/*')", "Permission Error"),
    ("escape with ..", "SELECT * FROM read_text('{root}/../secret.txt')", "Permission Error"),
]


def test_refused_statements_exit_2_and_write_and_reveal_nothing(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    synced(server, data_dir)
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET}\n")
    target = tmp_path / "planted-target"
    before = snapshot(data_dir.root)
    for kind, sql, says in REFUSED:
        statement = sql.format(root=data_dir.root, target=target, secret=secret, outside=tmp_path)

        result = run_cli("query", statement, "--data-dir", str(data_dir.root))

        line = one_line_error(result)
        assert says in line, kind
        if says != "Permission Error":
            assert line.startswith(
                "image-versions: error: query failed: query runs read-only "
                "statements (SELECT, FROM, WITH, VALUES, PIVOT, UNPIVOT, "
                f"DESCRIBE, SUMMARIZE, SHOW), {says}"
            ), kind
        assert SECRET not in result.stdout + result.stderr, kind
        assert not target.exists(), kind
        assert snapshot(data_dir.root) == before, kind


def test_select_statements_return_the_rows_the_warehouse_views_give(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir)
    before = snapshot(data_dir.root)
    sqls = [f"SELECT * FROM {view} ORDER BY ALL" for view in VIEW_NAMES]
    sqls.append("SELECT * FROM image_versions_as_of('2030-01-01 00:00:00+00') ORDER BY ALL")
    with connect(data_dir, read_only=True) as warehouse:
        expected = [warehouse.execute(sql).fetchall() for sql in sqls]
    assert [run_query(data_dir, sql).rows for sql in sqls] == expected
    assert any(expected)

    rows = query_json(
        data_dir,
        "SELECT region, image_name, version, image_arn, image_version_arn, status, "
        "failure_reason, epoch_ms(creation_time) AS c, epoch_ms(last_modified_time) AS m "
        "FROM image_versions",
    )
    assert {tuple(row.values()) for row in rows} == truth(server.emulator)
    # DESCRIBE, SHOW, FROM-first and several statements parse as SELECT: accepted.
    assert {"column_name": "account_id"} in query_json(
        data_dir, "SELECT column_name FROM (DESCRIBE image_versions)"
    )
    assert {"name": "sync_state"} in query_json(data_dir, "SHOW TABLES")
    assert query_json(data_dir, "FROM images SELECT count(*) AS n; SELECT 7 AS n") == [{"n": 7}]
    assert snapshot(data_dir.root) == before


def test_every_read_only_form_runs_pivot_included(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir)
    statuses = {status for *_, status, _, _, _ in truth(server.emulator)}
    # PIVOT, its IN list left to the data: DuckDB's parser calls it MULTI, not SELECT.
    [pivoted] = query_json(
        data_dir, "PIVOT (SELECT status FROM image_versions) ON status USING count(*)"
    )
    assert set(pivoted) == statuses and sum(pivoted.values()) == len(truth(server.emulator))
    forms = {
        "with": "WITH v AS (SELECT * FROM image_versions) PIVOT v ON status USING count(*)",
        "pivot in a subquery": "SELECT * FROM (PIVOT image_versions ON status USING count(*))",
        "unpivot": "UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v",
        "from first": "FROM image_versions SELECT count(*) AS n",
        "with select": "WITH n AS (SELECT count(*) AS n FROM image_versions) SELECT n FROM n",
        "describe": "DESCRIBE image_versions",
        "summarize": "SUMMARIZE image_versions",
        "values": "VALUES (1, 'a')",
    }
    for form, sql in forms.items():
        assert run_query(data_dir, sql).rows, form


def test_query_and_status_ignore_a_garbage_warehouse_and_take_no_lock(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir)
    garbage = b"this is not a duckdb file\x00\xff" * 200
    data_dir.warehouse_path.write_bytes(garbage)
    root = str(data_dir.root)

    with data_dir.exclusive():
        before = snapshot(data_dir.root)
        status = run_cli("status", "--data-dir", root, "--images", "--json")
        count = query_json(data_dir, "SELECT count(*) AS n FROM image_versions")

    assert status.code == 0, status.stderr
    assert {row["image_name"] for row in json.loads(status.stdout)} == set(
        server.emulator.image_names(REGION)
    )
    assert count == [{"n": len(truth(server.emulator))}]
    assert data_dir.warehouse_path.read_bytes() == garbage
    assert snapshot(data_dir.root) == before


def test_query_works_while_another_process_holds_the_warehouse_open(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir)
    with duckdb.connect(str(data_dir.warehouse_path)):
        count = query_json(data_dir, "SELECT count(*) AS n FROM image_versions")
    assert count == [{"n": len(truth(server.emulator))}]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _sqlite(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE foreign_table (a)")


@pytest.mark.parametrize(
    "plant",
    [
        lambda path: path.write_bytes(b"\x00garbage\xff" * 500),
        _truncate,
        _sqlite,
    ],
    ids=["garbage", "truncated", "sqlite"],
)
def test_a_sync_rebuilds_an_unreadable_warehouse(
    server: EmulatorServer, data_dir: DataDir, plant: object
) -> None:
    synced(server, data_dir)
    assert callable(plant)
    plant(data_dir.warehouse_path)

    result = cli_sync(server, data_dir, "-v")

    assert result.code == 0, result.stderr
    assert "rebuilding the unreadable warehouse" in result.stderr
    assert sorted(live_rows(data_dir)) == sorted(truth(server.emulator))


def test_a_warehouse_path_that_is_a_directory_is_a_data_error(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    synced(server, data_dir)
    data_dir.warehouse_path.unlink()
    data_dir.warehouse_path.mkdir()

    line = one_line_error(cli_sync(server, data_dir))

    assert f"{data_dir.warehouse_path} is a directory" in line
    assert data_dir.warehouse_path.is_dir()


@pytest.mark.parametrize(
    ("damage", "enrich"),
    [("truncated", False), ("foreign", False), ("truncated", True)],
    ids=["truncated-versions", "foreign-versions", "truncated-details"],
)
def test_a_damaged_parquet_file_stops_a_reconcile_naming_it(
    server: EmulatorServer, data_dir: DataDir, damage: str, enrich: bool
) -> None:
    synced(server, data_dir, enrich=enrich)
    files = data_dir.details_files() if enrich else data_dir.version_files()
    damaged = Path(files[len(files) // 2])
    if damage == "truncated":
        _truncate(damaged)
    else:
        damaged.write_bytes(b"account_id,region\n123456789012,us-east-1\n")

    flags = ["--reconcile", "--enrich"] if enrich else ["--reconcile"]
    line = one_line_error(cli_sync(server, data_dir, *flags))

    assert f"{damaged.relative_to(data_dir.root)} in {data_dir.root} cannot be read" in line
    assert "image-versions verify --repair" in line
