"""Rendering for people and scripts: text tables, CSV, JSON, and the sync summary.

A value has one JSON value (`json_value`), whichever command prints it; a CSV or table cell
shows that value's text: a string as it is, anything else as its JSON text. A table shows it
`printable` (terminal.py): control characters as escapes; CSV and JSON keep it exact.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from .terminal import inert_json, printable

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType

    from .run import SyncReport

__all__ = [
    "json_value",
    "print_json",
    "print_records",
    "print_table",
    "report_metadata",
    "summary_line",
    "timestamp_text",
    "write_records",
]

ToJson = Callable[[Any], Any]

# A double holds every decimal of up to this many significant digits exactly (DBL_DIG).
_DOUBLE_EXACT_DIGITS = sys.float_info.dig
# DuckDB's Python client hands over a MAP whose keys are of these types as
# {"key": [...], "value": [...]}, and any other MAP as a dict.
_MAP_KEYS_AS_LISTS = frozenset({"list", "array", "struct", "map"})
# A day to carry a time of day with a zone over into UTC; which day does not matter.
_ANY_DAY = date(2000, 1, 1)
# Types whose Python values are their JSON values already, and whose CSV text is what the csv
# module writes (an integer's digits, the string itself, nothing for NULL): passed as they are.
_AS_THEY_ARE = frozenset(
    {"tinyint", "smallint", "integer", "bigint", "hugeint", "varchar"}
    | {"utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"}
)


def _fraction(value: datetime | time) -> str:
    """Milliseconds, the dataset's precision, unless the value has finer digits."""
    return "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"


def timestamp_text(value: datetime) -> str:
    """ISO 8601 in UTC with `+00:00`; a timestamp without a zone is taken as UTC already."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.isoformat(timespec=_fraction(utc))


def _time_text(value: time) -> str:
    if value.tzinfo is not None:
        value = datetime.combine(_ANY_DAY, value).astimezone(UTC).timetz()
    return value.isoformat(timespec=_fraction(value))


def _decimal_value(value: Decimal, precision: int) -> int | float | str | None:
    """A number when a double holds `precision` digits exactly, else the exact digits as text."""
    if not value.is_finite():
        return None
    if precision > _DOUBLE_EXACT_DIGITS:
        return format(value, "f")
    exponent = value.as_tuple().exponent
    return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)


def _plain_value(value: Any) -> Any:
    """The JSON value of `value`, judged by its Python type alone."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _decimal_value(value, len(value.as_tuple().digits))
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return _time_text(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_plain_value(item) for item in value]
    if isinstance(value, dict):
        return {_text(_plain_value(key)): _plain_value(item) for key, item in value.items()}
    return str(value)  # a UUID; in a log line, whatever an `extra=` held


def _text(shown: Any) -> str:
    """The text of a JSON value in a CSV or table cell, or as an object key."""
    if shown is None:
        return ""
    if isinstance(shown, str):
        return shown
    # What the JSON encoder writes for these, at a tenth of the cost.
    if isinstance(shown, bool):
        return "true" if shown else "false"
    if isinstance(shown, int | float):
        return repr(shown)
    return _json_text(shown)


# One encoder for every value: json.dumps builds a new one per call when given options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def _json_text(shown: Any) -> str:
    return _ENCODER.encode(shown)


def _children(column_type: DuckDBPyType) -> dict[str, Any]:
    return dict(column_type.children)


def _as_it_is(value: Any) -> Any:
    return value


def _nullable(convert: ToJson) -> ToJson:
    return lambda value: None if value is None else convert(value)


def _to_json(column_type: DuckDBPyType | None) -> ToJson:
    """What maps the values of a column of `column_type` to JSON values, built once a column.

    The type settles what a Python value alone cannot: a decimal's precision, a JSON or a
    BIGNUM (both arrive as text), the shape of a MAP, and all of these inside nested types.
    """
    if column_type is None:
        return _plain_value
    kind = column_type.id
    if kind == "decimal":
        precision = _children(column_type)["precision"]
        return _nullable(lambda value: _decimal_value(value, precision))
    if kind == "bignum":
        return _nullable(int)
    if str(column_type) == "JSON":
        return _nullable(lambda value: _plain_value(json.loads(value)))
    if kind in _AS_THEY_ARE:
        return _as_it_is
    if kind in ("list", "array"):
        item = _to_json(_children(column_type)["child"])
        return _nullable(lambda value: [item(element) for element in value])
    if kind == "struct":
        fields = {name: _to_json(field) for name, field in _children(column_type).items()}
        return _nullable(lambda value: {name: fields[name](v) for name, v in value.items()})
    if kind == "map":
        return _nullable(_map_to_json(column_type))
    return _plain_value


def _map_to_json(column_type: DuckDBPyType) -> ToJson:
    """A MAP becomes an object; a key that is not a string is keyed by its JSON text."""
    parts = _children(column_type)
    key_of, value_of = _to_json(parts["key"]), _to_json(parts["value"])
    keys_as_lists = parts["key"].id in _MAP_KEYS_AS_LISTS

    def convert(value: dict[Any, Any]) -> dict[str, Any]:
        pairs = zip(value["key"], value["value"], strict=True) if keys_as_lists else value.items()
        return {_text(key_of(key)): value_of(item) for key, item in pairs}

    return convert


def json_value(value: Any, column_type: DuckDBPyType | None = None) -> Any:
    """The JSON value of a DuckDB result value, or of any plain Python value.

    `column_type` is the column's DuckDB type, when known. No NaN or infinity ever comes out:
    the mapping of each type is the table in docs/analytics.md.
    """
    return _to_json(column_type)(value)


def _converters(columns: Sequence[str], types: Sequence[DuckDBPyType] | None) -> list[ToJson]:
    if types is None:
        return [_plain_value] * len(columns)
    return [_to_json(column_type) for column_type in types]


def _per_column(
    functions: Sequence[Callable[[Any], Any]], rows: Sequence[Sequence[Any]]
) -> Sequence[Sequence[Any]]:
    """Each value through its column's function; `rows` themselves when each passes values as
    they are."""
    if all(function is _as_it_is for function in functions):
        return rows
    return [[f(value) for f, value in zip(functions, row, strict=True)] for row in rows]


def _text_of(convert: ToJson) -> ToJson:
    return lambda value: _text(convert(value))


def _json_line(value: Any) -> str:
    """The JSON text of a JSON value, inert on a terminal (terminal.inert_json)."""
    return inert_json(_json_text(value))


def print_json(value: Any, out: TextIO) -> None:
    """`value` as one line of strict JSON."""
    out.write(_json_line(json_value(value)) + "\n")


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    out: TextIO,
    types: Sequence[DuckDBPyType] | None = None,
) -> None:
    """A plain fixed-width text table."""
    _write_table(columns, _converters(columns, types), [rows], out, None)


def _write_table(
    columns: Sequence[str],
    convert: Sequence[ToJson],
    batches: Iterable[Sequence[Sequence[Any]]],
    out: TextIO,
    limit: int | None,
) -> None:
    """The table of the first `limit` rows (all when None), and how many rows there were.

    Every cell and name is `printable`: a value's control characters show as escapes.
    """
    cells: list[list[str]] = []
    total = 0
    for rows in batches:
        total += len(rows)
        room = len(rows) if limit is None else max(limit - len(cells), 0)
        for row in _per_column(convert, rows[:room]):
            cells.append([printable(_text(shown)) for shown in row])
    names = [printable(name) for name in columns]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    line = "  ".join(name.ljust(width) for name, width in zip(names, widths, strict=True))
    out.write(line.rstrip() + "\n")
    out.write("  ".join("-" * width for width in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    count = f"{total:,} row{'s' if total != 1 else ''}"
    if len(cells) < total:
        count += f", the first {len(cells):,} shown; --format csv or json prints them all"
    out.write(f"({count})\n")


def print_records(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str,
    out: TextIO,
    types: Sequence[DuckDBPyType] | None = None,
) -> None:
    """Print query rows, given their DuckDB column types when known, as a table, CSV, one
    JSON array of objects, or one JSON object a line (`jsonl`)."""
    write_records(columns, types, [rows], fmt, out)


def write_records(
    columns: Sequence[str],
    types: Sequence[DuckDBPyType] | None,
    batches: Iterable[Sequence[Sequence[Any]]],
    fmt: str,
    out: TextIO,
    *,
    table_rows: int | None = None,
) -> None:
    """`print_records` over rows that arrive in batches, each printed before the next is
    read: CSV and JSON hold one batch at a time, whatever the number of rows; a table holds the
    first `table_rows` rows (all when None) and counts the rest."""
    convert = _converters(columns, types)
    if fmt == "table":
        _write_table(columns, convert, batches, out, table_rows)
        return
    if fmt == "csv":
        out.write(_csv_lines([columns]))
        # A cell's text straight from the value: a column passed as it is needs none.
        texts = [c if c is _as_it_is else _text_of(c) for c in convert]
        for rows in batches:
            out.write(_csv_lines(_per_column(texts, rows)))
        return
    converted = (_per_column(convert, rows) for rows in batches if rows)
    records = ([dict(zip(columns, row, strict=True)) for row in rows] for rows in converted)
    if fmt == "jsonl":
        for batch in records:
            out.write(inert_json("".join(_json_text(record) + "\n" for record in batch)))
        return
    out.write("[")  # one array, written a batch of elements at a time
    between = ""
    for batch in records:
        out.write(between + _json_line(batch)[1:-1])
        between = ", "
    out.write("]\n")


def _csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    """CSV lines ending in "\\n". Before Python 3.13 the csv module quotes a field that holds the
    line terminator but not one holding a lone "\\r", which readers take for a line break: a row
    with such a field is written with every field quoted."""
    chunk = io.StringIO()
    csv.writer(chunk, lineterminator="\n").writerows(rows)
    if "\r" not in chunk.getvalue():
        return chunk.getvalue()
    chunk = io.StringIO()
    plain = csv.writer(chunk, lineterminator="\n")
    quoted = csv.writer(chunk, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        (quoted if any(isinstance(v, str) and "\r" in v for v in row) else plain).writerow(row)
    return chunk.getvalue()


def summary_line(figures: Mapping[str, Any]) -> str:
    """The closing summary of a sync, for people, from `report_metadata` figures."""
    details = (
        f"; details: {figures['versions_described']} versions described "
        f"({figures['describe_image_version_calls']} DescribeImageVersion, "
        f"{figures['list_aliases_calls']} ListAliases calls), "
        f"{figures['versions_vanished_before_describe']} deleted before describing"
        if figures["enriched"]
        else ""
    )
    if figures.get("list_tags_calls"):
        details += (
            f"; roles and tags: {figures['describe_image_calls']} DescribeImage, "
            f"{figures['list_tags_calls']} ListTags calls"
        )
    return (
        f"synced {figures['images']} images of {figures['targets']} "
        f"target{'s' if figures['targets'] != 1 else ''} in {figures['seconds']:.1f} s: "
        f"{figures['versions_new']} new, {figures['versions_changed']} changed, "
        f"{figures['versions_deleted']} deleted versions; {figures['api_calls']} API calls "
        f"({figures['list_images_calls']} ListImages, "
        f"{figures['list_image_versions_calls']} ListImageVersions), "
        f"{figures['throttled_retries']} throttled attempts{details}"
    )


def report_metadata(report: SyncReport) -> dict[str, int | float | str | None]:
    """The sync's figures as flat values, for Dagster metadata and logs."""
    from .schema import from_ms  # here, not at the top: it imports pyarrow, --help does not

    stats = report.stats
    watermarks = sorted(report.watermarks)

    def iso(ms: int | None) -> str | None:
        return None if ms is None else timestamp_text(from_ms(ms))

    return {
        "targets": report.targets,
        "images": report.images,
        "versions_new": report.new,
        "versions_changed": report.changed,
        "versions_deleted": report.deleted,
        "rows_written": report.rows_written,
        "api_calls": stats.total_calls,
        "list_images_calls": stats.calls["ListImages"],
        "list_image_versions_calls": stats.calls["ListImageVersions"],
        "enriched": report.enriched,
        "versions_described": report.described,
        "versions_vanished_before_describe": report.details_vanished,
        "describe_image_version_calls": stats.calls["DescribeImageVersion"],
        "list_aliases_calls": stats.calls["ListAliases"],
        "describe_image_calls": stats.calls["DescribeImage"],
        "list_tags_calls": stats.calls["ListTags"],
        "throttled_retries": stats.throttled,
        "seconds": round(report.seconds, 3),
        "failed": len(report.failures),
        "watermark_min": iso(watermarks[0] if watermarks else None),
        "watermark_max": iso(watermarks[-1] if watermarks else None),
    }
