"""Whole-dataset checks, run with DuckDB over the warehouse views and the state files.

Each check returns a `CheckOutcome`; the Dagster asset checks are thin wrappers around these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from .model import STATE_COLUMNS, VERSION_KEY
from .schema import IMAGE_VERSION_SCHEMA
from .state import local_previous_state_copies, local_state_copies
from .storage import DataDir
from .warehouse import connect, latest_order, scan_connection, versions_relation

__all__ = [
    "DAMAGE_CHECKS",
    "CheckOutcome",
    "no_duplicate_live_versions",
    "sources_are_fresh",
    "states_stored_once",
    "values_match_the_api_model",
    "watermarks_never_decrease",
]

# From botocore's SageMaker model (ImageVersionStatus, ImageArn, ImageVersionArn).
VERSION_STATUSES = ("CREATING", "CREATED", "CREATE_FAILED", "DELETING", "DELETE_FAILED")
IMAGE_ARN_PATTERN = r"arn:aws(-[\w]+)*:sagemaker:.+:[0-9]{12}:image/[a-zA-Z0-9]([-.]?[a-zA-Z0-9])*"
VERSION_ARN_PATTERN = (
    r"arn:aws(-[\w]+)*:sagemaker:.+:[0-9]{12}:image-version/[a-z0-9]([-.]?[a-z0-9])*/[0-9]+|None"
)
SAMPLE_ROWS = 10


def _names_another(column: str, resource: str) -> str:
    """SQL: the ARN in `column` is not that of `resource` in the row's account and region (in
    any partition). Compared without regard to case, as schema.version_row does on the way
    in: ImageVersionArn lower-cases the image name, and ImageArn may."""
    partition = f"regexp_extract({column}, '^arn:([^:]+):', 1)"
    expected = f"'arn:' || {partition} || ':sagemaker:' || region || ':' || account_id || ':'"
    return f"lower({column}) <> lower({expected} || {resource})"


ARN_NAMES_ANOTHER_ROW = (
    _names_another("image_arn", "'image/' || image_name")
    + " OR (image_version_arn <> 'None' AND "
    + _names_another("image_version_arn", "'image-version/' || image_name || '/' || version")
    + ")"
)
"""SQL: a row whose ImageArn or ImageVersionArn names another image, version, account or
region than the row itself."""


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


NO_WAREHOUSE = CheckOutcome(False, "no warehouse yet: nothing has been synced into this data dir")


def _outcome(
    rows: list[Any], passed: str, failed: str, example: Callable[..., str]
) -> CheckOutcome:
    """Passed when the query found no offending row; else up to SAMPLE_ROWS examples."""
    if not rows:
        return CheckOutcome(True, passed)
    return CheckOutcome(
        False, f"{len(rows)}+ {failed}", {"examples": [example(*row) for row in rows]}
    )


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[Any]:
    return connection.execute(sql, params).fetchall()


def no_duplicate_live_versions(data_dir: DataDir) -> CheckOutcome:
    """No version has two different states that are both its latest.

    The `image_versions` view keeps one row per version by construction; this checks the
    stored rows underneath it, where two states that the rule of "latest" (`LATEST_FIRST`)
    cannot tell apart would make the latest state ambiguous.
    """
    key = ", ".join(VERSION_KEY)
    state = ", ".join(c for c in STATE_COLUMNS if c not in VERSION_KEY)
    order = latest_order(IMAGE_VERSION_SCHEMA)
    with scan_connection(data_dir) as connection:
        rows = _rows(
            connection,
            f"WITH latest AS (SELECT * FROM {versions_relation(data_dir)} "
            f"QUALIFY rank() OVER (PARTITION BY {key} ORDER BY {order}) = 1) "
            f"SELECT {key}, count(DISTINCT ({state})) AS n FROM latest "
            "GROUP BY ALL HAVING n > 1 ORDER BY ALL LIMIT ?",
            [SAMPLE_ROWS],
        )
    return _outcome(
        rows,
        "every live version has one latest state",
        "versions have several states at their latest observation",
        lambda a, r, i, v, n: f"{a}/{r}/{i} v{v}: {n} states",
    )


def watermarks_never_decrease(data_dir: DataDir) -> CheckOutcome:
    """No live image's watermark is lower than it was before the last sync."""
    current, previous = local_state_copies(data_dir), local_previous_state_copies(data_dir)
    if not (current and previous):
        return CheckOutcome(True, "fewer than two syncs recorded: nothing to compare")
    with duckdb.connect() as connection:
        rows = _rows(
            connection,
            "SELECT c.account_id, c.region, c.image_name, p.watermark, c.watermark "
            "FROM read_parquet(?) AS c JOIN read_parquet(?) AS p "
            "USING (account_id, region, image_name) "
            "WHERE NOT c.is_deleted AND NOT p.is_deleted "
            "AND p.watermark IS NOT NULL AND (c.watermark IS NULL OR c.watermark < p.watermark) "
            "ORDER BY ALL LIMIT ?",
            [[str(p) for p in current], [str(p) for p in previous], SAMPLE_ROWS],
        )
    return _outcome(
        rows,
        "no watermark went back",
        "image watermarks went back",
        lambda a, r, i, before, after: f"{a}/{r}/{i}: {before} -> {after}",
    )


def values_match_the_api_model(data_dir: DataDir) -> CheckOutcome:
    """Statuses, ARNs, account ids and versions are valid against the API's model, and each
    row's ARNs name the row's own image, version, account and region."""
    statuses = list(VERSION_STATUSES)
    if not data_dir.warehouse_path.exists():
        return NO_WAREHOUSE
    with connect(data_dir, read_only=True) as connection:
        rows = _rows(
            connection,
            "SELECT image_name, version, status, image_arn, image_version_arn "
            "FROM image_version_history WHERE NOT list_contains(?, status) "
            "OR NOT regexp_full_match(image_arn, ?) "
            "OR NOT regexp_full_match(image_version_arn, ?) "
            "OR NOT regexp_full_match(account_id, '[0-9]{12}') OR version < 0 "
            f"OR {ARN_NAMES_ANOTHER_ROW} ORDER BY ALL LIMIT ?",
            [statuses, IMAGE_ARN_PATTERN, VERSION_ARN_PATTERN, SAMPLE_ROWS],
        )
    return _outcome(
        rows,
        "every status and ARN is valid against the API model",
        "rows hold values the API model does not allow",
        lambda i, v, s, a, va: f"{i} v{v}: status={s} arn={a} version_arn={va}",
    )


def sources_are_fresh(
    data_dir: DataDir, max_age: timedelta, now: datetime | None = None
) -> CheckOutcome:
    """Every (source, region) with live images was synced within `max_age`."""
    now = now or datetime.now(UTC)
    if not data_dir.warehouse_path.exists():
        return NO_WAREHOUSE
    with connect(data_dir, read_only=True) as connection:
        rows = _rows(
            connection,
            "SELECT source, region, max(last_synced_at) AS last FROM sync_state "
            "WHERE NOT is_deleted GROUP BY ALL ORDER BY ALL",
            [],
        )
    stale = [(s, r, last) for s, r, last in rows if last is None or last < now - max_age]
    if not rows:
        return CheckOutcome(False, "no source has been synced yet")
    if not stale:
        return CheckOutcome(True, f"{len(rows)} source(s) synced within {max_age}")
    return CheckOutcome(
        False,
        f"{len(stale)} source(s) not synced within {max_age}",
        {"stale": [f"{s}/{r}: last synced {last}" for s, r, last in stale[:SAMPLE_ROWS]]},
    )


def states_stored_once(data_dir: DataDir) -> CheckOutcome:
    """No stored row repeats another in every column (invariant 14).

    The views cannot show such copies, but each one is read by every query and merged again by
    every compaction. Where the sync history shows several sources reaching the account and
    region, they are named: releases before one owner per account let each store its own.
    """
    if not data_dir.warehouse_path.exists():
        return NO_WAREHOUSE
    key = "account_id, region"
    with connect(data_dir, read_only=True) as connection:
        rows = _rows(
            connection,
            f"WITH raw AS (SELECT * FROM {versions_relation(data_dir)}), "
            f"copies AS (SELECT {key}, count(*) - count(DISTINCT raw) AS n FROM raw "
            "GROUP BY ALL HAVING n > 0), "
            f"sources AS (SELECT {key}, string_agg(DISTINCT source, ' and ' ORDER BY source) "
            "AS names, count(DISTINCT source) AS k FROM sync_runs GROUP BY ALL) "
            f"SELECT {key}, n, CASE WHEN k > 1 THEN names END FROM copies "
            f"LEFT JOIN sources USING ({key}) ORDER BY ALL LIMIT ?",
            [SAMPLE_ROWS],
        )

    def example(account: str, region: str, copies: int, sources: str | None) -> str:
        cause = (
            f"sources {sources} both synced it before it had one owner"
            if sources
            else "a file copied by hand, or two compactions at once"
        )
        return (
            f"{account}/{region}: {copies} copies ({cause}); `image-versions compact` removes them"
        )

    return _outcome(
        rows,
        "every state is stored once",
        "accounts and regions store copies of states",
        example,
    )


DAMAGE_CHECKS = (
    no_duplicate_live_versions,
    values_match_the_api_model,
    watermarks_never_decrease,
    states_stored_once,
)
"""The checks a healthy dataset passes whenever it is read (`verify` runs them); freshness is
a schedule's question, not damage."""
