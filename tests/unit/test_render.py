"""Every DuckDB type prints as its natural JSON value, and as that value's text in CSV and tables,
strict JSON (no NaN, no Infinity). tests/e2e/test_render.py checks the commands print the same."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import duckdb
import pytest

from pipeline.render import json_value, print_json, print_records

BIG = "1" + "0" * 45
# (column, SQL literal, its JSON value, its CSV text): every kind of DuckDB type.
TYPES: list[tuple[str, str, Any, str]] = [
    ("boolean", "true", True, "true"),
    ("tinyint", "-7::TINYINT", -7, "-7"),
    ("hugeint", "'-170141183460469231731687303715884105728'::HUGEINT", -(2**127), str(-(2**127))),
    ("uhugeint", "340282366920938463463374607431768211455::UHUGEINT", 2**128 - 1, str(2**128 - 1)),
    ("bignum", f"'{BIG}'::BIGNUM", int(BIG), BIG),
    ("float", "1.5::FLOAT", 1.5, "1.5"),
    ("double", "0.1::DOUBLE", 0.1, "0.1"),
    ("nan", "'nan'::DOUBLE", None, ""),
    ("infinity", "'inf'::DOUBLE", None, ""),
    ("minus_infinity", "'-inf'::FLOAT", None, ""),
    ("decimal", "1.10::DECIMAL(4,2)", 1.1, "1.1"),
    ("decimal_integer", "42::DECIMAL(10,0)", 42, "42"),
    ("decimal_wide", "1.5::DECIMAL(18,3)", "1.500", "1.500"),
    (
        "decimal_huge",
        "-12345678901234567890.5::DECIMAL(38,1)",
        "-12345678901234567890.5",
        "-12345678901234567890.5",
    ),
    ("varchar", "'é, \"quoted\"'", 'é, "quoted"', 'é, "quoted"'),
    ("blob", "'\\x00\\xFFab'::BLOB", "AP9hYg==", "AP9hYg=="),
    ("date", "DATE '2024-02-29'", "2024-02-29", "2024-02-29"),
    ("time", "TIME '12:34:56.789'", "12:34:56.789", "12:34:56.789"),
    ("time_micro", "TIME '12:34:56.000001'", "12:34:56.000001", "12:34:56.000001"),
    ("time_end_of_day", "TIME '24:00:00'", "24:00:00", "24:00:00"),
    ("timetz", "TIMETZ '23:30:00-02:00'", "01:30:00.000+00:00", "01:30:00.000+00:00"),
    (
        "timestamp",
        "TIMESTAMP '2024-01-02 03:04:05'",
        "2024-01-02T03:04:05.000+00:00",
        "2024-01-02T03:04:05.000+00:00",
    ),
    # DuckDB's Python values stop at microseconds.
    (
        "timestamp_ns",
        "TIMESTAMP_NS '2024-01-02 03:04:05.123456789'",
        "2024-01-02T03:04:05.123456+00:00",
        "2024-01-02T03:04:05.123456+00:00",
    ),
    (
        "timestamptz",
        "TIMESTAMPTZ '2024-01-02 03:04:05.123+01:00'",
        "2024-01-02T02:04:05.123+00:00",
        "2024-01-02T02:04:05.123+00:00",
    ),
    (
        "timestamptz_infinity",
        "'infinity'::TIMESTAMPTZ",
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T23:59:59.999999+00:00",
    ),
    ("interval", "INTERVAL '30.499 seconds'", 30.499, "30.499"),
    ("interval_month", "INTERVAL '1 month 2 days 3 hours'", 2775600.0, "2775600.0"),
    ("interval_negative", "-INTERVAL '90 minutes'", -5400.0, "-5400.0"),
    (
        "uuid",
        "'5b0a5b0a-1111-2222-3333-444455556666'::UUID",
        "5b0a5b0a-1111-2222-3333-444455556666",
        "5b0a5b0a-1111-2222-3333-444455556666",
    ),
    ("enum", "'b'::ENUM('a', 'b')", "b", "b"),
    ("bit", "'0101'::BIT", "0101", "0101"),
    ("json", "'{\"a\": [1, NaN]}'::JSON", {"a": [1, None]}, '{"a": [1, null]}'),
    ("list", "['a1', NULL]", ["a1", None], '["a1", null]'),
    ("empty_list", "[]::INTEGER[]", [], "[]"),
    ("array", "[1, 2]::INTEGER[2]", [1, 2], "[1, 2]"),
    ("struct", "{'a': 1, 'b': 'nan'::DOUBLE}", {"a": 1, "b": None}, '{"a": 1, "b": null}'),
    ("map", "MAP {'k': 2.50::DECIMAL(20,2)}", {"k": "2.50"}, '{"k": "2.50"}'),
    ("map_int_keys", "MAP {2: 'two'}", {"2": "two"}, '{"2": "two"}'),
    ("map_list_keys", "MAP {[1, 2]: 'x'}", {"[1, 2]": "x"}, '{"[1, 2]": "x"}'),
    ("map_struct_keys", "MAP {{'k': 1}: 'x'}", {'{"k": 1}': "x"}, '{"{\\"k\\": 1}": "x"}'),
    ("union", "union_value(n := 2)::UNION(n INTEGER, s VARCHAR)", 2, "2"),
    (
        "nested",
        "[{'at': TIMESTAMPTZ '2024-01-01 00:00:00+00', 'took': INTERVAL 90 SECOND, "
        "'raw': '\\xFF'::BLOB, 'cost': 2.50::DECIMAL(5,2), 'exact': 1.5::DECIMAL(30,1)}]",
        [
            {
                "at": "2024-01-01T00:00:00.000+00:00",
                "took": 90.0,
                "raw": "/w==",
                "cost": 2.5,
                "exact": "1.5",
            }
        ],
        '[{"at": "2024-01-01T00:00:00.000+00:00", "took": 90.0, "raw": "/w==", "cost": 2.5, '
        '"exact": "1.5"}]',
    ),
    ("null", "NULL", None, ""),
]
EVERY_TYPE_SQL = "SELECT " + ", ".join(f"{sql} AS {column}" for column, sql, _, _ in TYPES)
COLUMNS = [column for column, _, _, _ in TYPES]
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def strict_json(text: str) -> Any:
    """`json.loads` that refuses NaN and ±Infinity, as strict JSON parsers do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def rendered(fmt: str, time_zone: str) -> str:
    """EVERY_TYPE_SQL run by DuckDB in a session of `time_zone`, printed in `fmt`."""
    with duckdb.connect() as connection:
        connection.execute(f"SET TimeZone = '{time_zone}'")
        relation = connection.sql(EVERY_TYPE_SQL)
        out = io.StringIO()
        print_records(relation.columns, relation.fetchall(), fmt, out, relation.types)
    return out.getvalue()


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata"])
def test_every_duckdb_type_has_its_natural_json_value(time_zone: str) -> None:
    [record] = strict_json(rendered("json", time_zone))
    assert list(record) == COLUMNS
    assert record == {column: value for column, _, value, _ in TYPES}
    # A JSON number only where the value is one: decimals too wide for a double stay text.
    assert type(record["decimal"]) is float and type(record["decimal_integer"]) is int


def test_csv_cells_are_the_json_values_text() -> None:
    header, row = list(csv.reader(io.StringIO(rendered("csv", "America/New_York"))))
    assert header == COLUMNS
    assert dict(zip(header, row, strict=True)) == {column: text for column, _, _, text in TYPES}


def test_a_table_shows_the_same_text_and_no_python_reprs() -> None:
    header, _, cells, count = rendered("table", "UTC").splitlines()
    assert header.split() == COLUMNS and count == "(1 row)"
    for fragment in ("Decimal(", "datetime.", "b'", "UUID(", "timedelta", "nan", "inf", "True"):
        assert fragment not in cells
    texts = [text for _, _, _, text in TYPES]
    assert cells.split() == " ".join(texts).split()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), None),
        (float("-inf"), None),
        ([1.0, float("inf")], [1.0, None]),
        (Decimal("1.10"), 1.1),
        (Decimal("1234567890123456.5"), "1234567890123456.5"),
        (Decimal("NaN"), None),
        (
            datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2024-01-01T00:00:00.000+00:00",
        ),
        (datetime(2024, 1, 1, 0, 0, 0, 1500), "2024-01-01T00:00:00.001500+00:00"),
        (date(2024, 1, 1), "2024-01-01"),
        (time(0, 30, tzinfo=timezone(timedelta(hours=1))), "23:30:00.000+00:00"),
        (timedelta(milliseconds=-1), -0.001),
        (b"\x00", "AA=="),
        ({1: [b"\xff"], "k": None}, {"1": ["/w=="], "k": None}),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (PurePosixPath("data/x"), "data/x"),  # e.g. a log line's extra
    ],
)
def test_plain_python_values_follow_the_same_rules(value: Any, expected: Any) -> None:
    assert json_value(value) == expected
    out = io.StringIO()
    print_json({"value": value}, out)
    assert strict_json(out.getvalue()) == {"value": expected}
