"""Rendering for people and scripts: text tables, CSV, JSON, and the sync summary."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .run import SyncReport

__all__ = ["json_value", "print_records", "print_table", "report_metadata", "summary_line"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """A plain fixed-width text table."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]
    line = "  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True))
    out.write(line.rstrip() + "\n")
    out.write("  ".join("-" * width for width in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def print_records(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: TextIO
) -> None:
    """Print rows as a table, CSV, or one JSON array of objects."""
    if fmt == "json":
        records = [
            {name: json_value(value) for name, value in zip(columns, row, strict=True)}
            for row in rows
        ]
        json.dump(records, out, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(value) for value in row] for row in rows])
    else:
        print_table(columns, rows, out)


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
    return (
        f"synced {figures['images']} images in {figures['seconds']:.1f} s: "
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
        return None if ms is None else from_ms(ms).isoformat(timespec="milliseconds")

    return {
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
        "throttled_retries": stats.throttled,
        "seconds": round(report.seconds, 3),
        "failed": len(report.failures),
        "watermark_min": iso(watermarks[0] if watermarks else None),
        "watermark_max": iso(watermarks[-1] if watermarks else None),
    }
