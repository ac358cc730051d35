"""Records the API should never send, planted by the emulator's response hook, through real
`image-versions` processes: each fails only its own image (invariant 9), and `verify` finds
stored rows that contradict themselves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.emulator import Emulator, EmulatorServer
from pipeline.storage import DataDir
from tests.support import OTHER_REGION, REGION, run_cli, truth

Change = Callable[[dict[str, Any]], None]
MIXED = "Mixed.Case"
"""An image whose name has capitals: its ImageVersionArn spells it in lower case."""


def seed(emulator: Emulator) -> None:
    for name in ("x", "y", MIXED):
        emulator.create_image(name, region=REGION)
        for _ in range(2):
            emulator.create_image_version(name, region=REGION)


def plant(emulator: Emulator, image: str, change: Change) -> None:
    """Every ListImageVersions answer about `image` gains a copy of its first record as
    `change` leaves it."""

    def rewrite(operation: str, response: dict[str, Any]) -> dict[str, Any]:
        records = response.get("ImageVersions", [])
        if operation == "ListImageVersions" and records[0:1]:
            listed = records[0]["ImageArn"].rsplit("/", 1)[1]
            if listed == image:
                extra = dict(records[0])
                change(extra)
                records.append(extra)
        return response

    emulator.rewrite_response = rewrite


def sync(server: EmulatorServer, data: Path) -> tuple[int, dict[str, Any], str]:
    result = run_cli("sync", "--data-dir", str(data), "--endpoint-url", server.url, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.code, json.loads(result.stdout), result.stderr


def stored(data: Path, view: str = "image_version_history") -> set[tuple[Any, ...]]:
    """(image, version, image_arn, image_version_arn) of every row of `view`."""
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            f"SELECT image_name, version, image_arn, image_version_arn FROM {view}"
        ).fetchall()
    return set(rows)


def expected(emulator: Emulator, but: str = "") -> set[tuple[Any, ...]]:
    return {(row[1], row[2], row[3], row[4]) for row in truth(emulator) if row[1] != but}


def arn(record: dict[str, Any], key: str, old: str, new: str) -> None:
    record[key] = record[key].replace(old, new)


OTHER_IMAGE: dict[str, Change] = {
    "ImageArn names another image": lambda r: (
        r.update(Version=7),
        arn(r, "ImageArn", "/x", "/y"),
        arn(r, "ImageVersionArn", "/x/", "/y/"),
    ),
    "ImageVersionArn names another image": lambda r: (
        r.update(Version=7),
        arn(r, "ImageVersionArn", "/x/", "/y/"),
    ),
    "ImageVersionArn names another version": lambda r: r.update(Version=7),
    "ImageVersionArn names another region": lambda r: (
        arn(r, "ImageVersionArn", f":{REGION}:", f":{OTHER_REGION}:"),
    ),
    "ImageArn names another region": lambda r: arn(
        r, "ImageArn", f":{REGION}:", f":{OTHER_REGION}:"
    ),
}


@pytest.mark.parametrize("case", list(OTHER_IMAGE))
def test_a_record_naming_another_image_fails_only_its_image(
    server: EmulatorServer, tmp_path: Path, case: str
) -> None:
    seed(server.emulator)
    plant(server.emulator, "x", OTHER_IMAGE[case])
    data = tmp_path / "data"
    code, summary, _ = sync(server, data)
    assert code == 1
    [failure] = summary["failures"]
    assert failure.startswith(f"default/{REGION} image x: MalformedRecord: Image")
    assert "does not name" in failure or "ImageArn names account" in failure
    assert stored(data) == expected(server.emulator, but="x")
    assert stored(data, "image_versions") == expected(server.emulator, but="x")


ONLY_CASE: dict[str, Change] = {
    "ImageArn in lower case": lambda r: r.update(ImageArn=r["ImageArn"].lower()),
    "ImageVersionArn keeping the case": lambda r: arn(r, "ImageVersionArn", "mixed.case", MIXED),
}


@pytest.mark.parametrize("case", list(ONLY_CASE))
def test_arns_that_spell_the_name_in_another_case_are_accepted(
    server: EmulatorServer, tmp_path: Path, case: str
) -> None:
    seed(server.emulator)

    def changed(record: dict[str, Any]) -> None:
        record.update(Version=3)
        arn(record, "ImageVersionArn", "/1", "/3")
        ONLY_CASE[case](record)

    plant(server.emulator, MIXED, changed)
    data = tmp_path / "data"
    code, summary, stderr = sync(server, data)
    assert code == 0, (summary, stderr)
    mixed = {row for row in stored(data) if row[0] == MIXED}
    assert {row[1] for row in mixed} == {1, 2, 3}
    assert any(MIXED in row[2] for row in mixed)  # the emulator's ImageArn keeps the case


@pytest.mark.parametrize(
    ("column", "old", "new"),
    [
        ("image_arn", ":image/x", ":image/y"),
        ("image_version_arn", "/x/1", "/y/1"),
        ("image_version_arn", "/x/1", "/x/2"),
        ("image_version_arn", f":{REGION}:", f":{OTHER_REGION}:"),
    ],
)
def test_verify_finds_stored_arns_that_name_another_row(
    server: EmulatorServer, tmp_path: Path, column: str, old: str, new: str
) -> None:
    seed(server.emulator)
    data = DataDir(tmp_path / "data")
    code, _, stderr = sync(server, data.root)
    assert code == 0, stderr
    assert run_cli("verify", "--data-dir", str(data.root)).code == 0
    [(path, table)] = [
        (path, table)
        for path in data.version_files()
        if "x" in (table := pq.read_table(path)).column("image_name").to_pylist()
    ]
    rows = table.to_pylist()
    for row in rows:  # the image's first version, in place: no second state of it
        if row["image_name"] == "x" and row["version"] == 1:
            assert old in row[column]
            row[column] = row[column].replace(old, new)
    data.atomic_write(table.from_pylist(rows, table.schema), path)

    found = run_cli("verify", "--data-dir", str(data.root))
    assert found.code == 1, (found.stdout, found.stderr)
    assert "PROBLEM values_match_the_api_model:" in found.stdout


@pytest.mark.parametrize("field", ["CreationTime", "LastModifiedTime"])
@pytest.mark.parametrize(
    "seconds",
    [253402300799.9999, float("nan"), float("inf"), -62135596800.5],
    ids=["rounds-to-year-10000", "nan", "inf", "before-year-1"],
)
def test_a_timestamp_no_month_can_hold_fails_only_its_image(
    server: EmulatorServer, tmp_path: Path, field: str, seconds: float
) -> None:
    seed(server.emulator)
    plant(server.emulator, "x", lambda r: r.update({field: seconds}))
    data = tmp_path / "data"
    code, summary, _ = sync(server, data)
    assert code == 1
    [failure] = summary["failures"]
    assert failure.startswith(f"default/{REGION} image x: MalformedRecord: {field} ")
    assert stored(data) == expected(server.emulator, but="x")
    months = {path.name for path in (data / "image_versions").glob("*/*")}
    assert months and all(len(month) == len("month=2026-03") for month in months), months


def test_the_last_millisecond_of_year_9999_is_kept(server: EmulatorServer, tmp_path: Path) -> None:
    seed(server.emulator)

    def last_millisecond(record: dict[str, Any]) -> None:
        record.update(Version=7, LastModifiedTime=253402300799.999)
        record["ImageVersionArn"] = record["ImageVersionArn"].rsplit("/", 1)[0] + "/7"

    plant(server.emulator, "x", last_millisecond)
    data = tmp_path / "data"
    code, summary, stderr = sync(server, data)
    assert code == 0, (summary, stderr)
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        kept = connection.execute(
            "SELECT strftime(last_modified_time, '%Y-%m-%d %H:%M:%S.%g') FROM image_versions "
            "WHERE image_name = 'x' AND version = 7"
        ).fetchall()
    assert kept == [("9999-12-31 23:59:59.999",)]
    assert list((data / "image_versions").glob("*/month=9999-12/*.parquet"))


def test_an_image_listed_on_two_pages_is_one_row_of_the_catalogue(
    server: EmulatorServer, tmp_path: Path
) -> None:
    """ListImages repeats an image on its last page, modified a minute later: `images` keeps
    the later record only, and the sync says so."""
    seed(server.emulator)
    for number in range(100):  # two pages of ListImages
        server.emulator.create_image(f"empty-{number:03}", region=REGION)
    first_page: list[dict[str, Any]] = []

    def repeat(operation: str, response: dict[str, Any]) -> dict[str, Any]:
        if operation == "ListImages" and "NextToken" in response:
            first_page[:] = response["Images"][:1]
        elif operation == "ListImages" and first_page:
            again = dict(first_page[0], DisplayName="listed again")
            again["LastModifiedTime"] += 60
            response["Images"].append(again)
        return response

    server.emulator.rewrite_response = repeat
    data = tmp_path / "data"
    args = ("sync", "--data-dir", str(data), "--endpoint-url", server.url, "-v")
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    [repeated] = first_page
    name = repeated["ImageName"]

    query = "SELECT image_name, display_name FROM images ORDER BY image_name"
    listed = run_cli("query", query, "--data-dir", str(data), "--format", "json")
    rows = json.loads(listed.stdout)
    assert len(rows) == len(server.emulator.image_names(REGION)) == 103
    assert len({row["image_name"] for row in rows}) == len(rows)
    assert {"image_name": name, "display_name": "listed again"} in rows
    assert stored(data) == expected(server.emulator)
    assert f"ListImages listed {name} more than once; kept its latest record" in result.stderr
