"""Failed image builds: the versions that entered CREATE_FAILED or DELETE_FAILED in the syncs
recorded after a given instant.

One query serves `image-versions status --failed-since WHEN` and the Dagster check
`failed_builds_since_last_run`. A transition (a row of `image_version_changes` into a failed
status, a version's first appearance included) counts for the first sync of its account and
region recorded in `sync_runs` at or after it was observed: the sync that observed it, or,
for a sync killed before its row was written, the next one. So a version is reported for the
sync that saw it enter the failed status, once; a version that stays failed is not reported
again, and a version that fails again later is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from duckdb.sqltypes import DuckDBPyType

from .model import VERSION_KEY
from .render import json_value, timestamp_text
from .storage import DataDir
from .warehouse import run_query

__all__ = ["FAILED_STATUSES", "FailedBuilds", "failed_builds", "parse_since"]

FAILED_STATUSES = ("CREATE_FAILED", "DELETE_FAILED")
_DURATION = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_KEY = ", ".join(VERSION_KEY)


@dataclass(frozen=True)
class FailedBuilds:
    """The versions that entered a failed status in the syncs recorded in (`since`,
    `through`], in the order they were recorded."""

    since: datetime
    through: datetime | None
    """The latest `finished_at` of `sync_runs` the query covered (None: no sync yet); the next
    call's `since`, so that every recorded sync is covered once."""
    columns: list[str]
    rows: list[tuple[Any, ...]]
    types: list[DuckDBPyType]

    def records(self) -> list[dict[str, Any]]:
        """The rows as JSON-ready objects, as `status --failed-since --json` prints them."""
        return [
            {c: json_value(v, t) for c, v, t in zip(self.columns, row, self.types, strict=True)}
            for row in self.rows
        ]

    def listing(self, max_listed: int) -> dict[str, Any]:
        """The window, the count and the first `max_listed` versions, as one JSON object: the
        check's metadata and the webhook's document."""
        return {
            "since": timestamp_text(self.since),
            "through": timestamp_text(self.through) if self.through else None,
            "count": len(self.rows),
            "versions": self.records()[:max_listed],
            "more": max(0, len(self.rows) - max_listed),
        }


def _sql_instant(instant: datetime) -> str:
    return f"TIMESTAMPTZ '{instant.astimezone(UTC).isoformat()}'"


def _same(left: str, right: str) -> str:
    """SQL: rows `left` and `right` are of the same version, in the same state."""
    columns = (*VERSION_KEY, "status", "last_modified_time")
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in columns)


def _failed_builds_sql(since: datetime, through: datetime) -> str:
    """The transitions into a failed status recorded by the syncs that finished in (`since`,
    `through`], with the failure reason of the state entered (`image_version_history`, matched
    on the state's status and LastModifiedTime)."""
    statuses = ", ".join(f"'{status}'" for status in FAILED_STATUSES)
    entered = (
        f"SELECT {_KEY}, from_status, to_status AS status, last_modified_time, changed_at "
        f"FROM image_version_changes WHERE to_status IN ({statuses})"
    )
    recorded = (
        f"SELECT e.*, r.finished_at AS recorded_at FROM ({entered}) AS e "
        "ASOF JOIN (SELECT account_id, region, finished_at FROM sync_runs) AS r "
        "ON e.account_id = r.account_id AND e.region = r.region "
        "AND e.changed_at <= r.finished_at"
    )
    states = (
        f"SELECT {_KEY}, status, last_modified_time, failure_reason, observed_at "
        "FROM image_version_history WHERE NOT is_deleted"
    )
    return (
        f"SELECT f.account_id, f.region, f.image_name, f.version, f.status, h.failure_reason, "
        f"f.from_status, f.changed_at AS failed_at, f.recorded_at FROM ({recorded}) AS f "
        f"ASOF LEFT JOIN ({states}) AS h ON {_same('f', 'h')} AND f.changed_at >= h.observed_at "
        f"WHERE f.recorded_at > {_sql_instant(since)} AND f.recorded_at <= {_sql_instant(through)} "
        f"ORDER BY f.recorded_at, {_KEY}"
    )


def failed_builds(data_dir: DataDir, since: datetime) -> FailedBuilds:
    """The versions that entered CREATE_FAILED or DELETE_FAILED in the syncs that finished after
    `since` (as `sync_runs` records them), up to the latest recorded sync.

    The bound is read first: a sync that finishes while the list is read is left to the next
    call (whose `since` is this `through`), never counted by both or by neither.
    """
    latest = run_query(data_dir, "SELECT max(finished_at) FROM sync_runs").rows[0][0]
    result = run_query(data_dir, _failed_builds_sql(since, latest or since))
    return FailedBuilds(since, latest, result.columns, result.rows, result.types)


def parse_since(text: str, now: datetime) -> datetime:
    """An instant given as a duration before `now` (`90m`, `24h`, `7d`, `2w`) or as an ISO
    8601 date or date and time (UTC unless it names its offset); ValueError with the forms
    accepted otherwise."""
    text = text.strip()
    if duration := _DURATION.fullmatch(text):
        return now - timedelta(**{_UNITS[duration["unit"]]: int(duration["amount"])})
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected a duration such as 24h or 7d (m, h, d, w) or an ISO date or date and "
            f"time such as 2026-06-01 or 2026-06-01T12:00Z, got {text!r}"
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
