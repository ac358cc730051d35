"""What `image-versions status` shows: one row per target (a source in a region, and the
account it reaches) by default, or one row per image; either narrowed to some sources,
accounts or images.

Everything comes from the views (`sync_runs`, `sync_state`, `image_versions`), read as
`query` reads them, except each account's learned API rate, which lives beside its state
(`rate.json`, state.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import account_key
from .state import load_learned_rate
from .storage import DataDir
from .warehouse import QueryResult, run_query

__all__ = ["IMAGE_COLUMNS", "TARGET_COLUMNS", "StatusFilter", "image_rows", "target_rows"]

IMAGE_COLUMNS = (
    "source",
    "account_id",
    "region",
    "image_name",
    "watermark",
    "last_synced_at",
    "version_count",
    "is_deleted",
    "last_error",
)
"""The per-image rows (`status --images`): the `sync_state` view's columns, as before."""
TARGET_COLUMNS = (
    "source",
    "region",
    "account_id",
    "images",
    "versions",
    "last_sync_at",
    "last_sync_ok",
    "last_failure_at",
    "last_failure",
    "learned_rps",
)
"""The per-target rows; `learned_rps` is added after the query (`_with_learned_rates`)."""

# One row per target that has a sync history, and one per account and region whose state
# predates that history (an older release's data dir); the figures are the account's.
_TARGETS_SQL = """
WITH runs AS (
    SELECT source, region,
        arg_max(account_id, finished_at) FILTER (WHERE account_id IS NOT NULL) AS account_id,
        max(finished_at) AS last_sync_at,
        arg_max(ok, finished_at) AS last_sync_ok,
        max(finished_at) FILTER (WHERE NOT ok) AS last_failure_at,
        arg_max(error, finished_at) FILTER (WHERE NOT ok) AS last_failure
    FROM sync_runs GROUP BY source, region
), states AS (
    SELECT account_id, region, min(source) AS source,
        count(*) FILTER (WHERE NOT is_deleted) AS images, max(last_synced_at) AS last_synced_at
    FROM sync_state GROUP BY account_id, region
), live AS (
    SELECT account_id, region, count(*) AS versions FROM image_versions GROUP BY ALL
), targets AS (
    SELECT * FROM runs
    UNION ALL BY NAME
    SELECT source, region, account_id, last_synced_at AS last_sync_at FROM states AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM runs AS r WHERE r.account_id = s.account_id AND r.region = s.region
    )
)
SELECT t.source, t.region, t.account_id, coalesce(s.images, 0) AS images,
    coalesce(v.versions, 0) AS versions, t.last_sync_at, t.last_sync_ok, t.last_failure_at,
    t.last_failure
FROM targets AS t
LEFT JOIN states AS s ON s.account_id = t.account_id AND s.region = t.region
LEFT JOIN live AS v ON v.account_id = t.account_id AND v.region = t.region
"""


@dataclass(frozen=True)
class StatusFilter:
    """Which rows to show; each part narrows, an empty one keeps all."""

    sources: tuple[str, ...] = ()
    """Source names: a name also keeps the member accounts of an organization source."""
    accounts: tuple[str, ...] = ()
    image: str | None = None
    """A glob of image names (`*`, `?`, `[...]`; case matters); per-image rows only."""

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        """The WHERE clause (or nothing) over columns of `alias`, and its parameters."""
        column = f"{alias}." if alias else ""
        clauses: list[str] = []
        params: list[Any] = []
        if self.sources:
            clauses.append(
                f"(list_contains(?, {column}source) "
                f"OR list_contains(?, split_part({column}source, '/', 1)))"
            )
            params += [list(self.sources), list(self.sources)]
        if self.accounts:
            clauses.append(f"list_contains(?, {column}account_id)")
            params.append(list(self.accounts))
        if self.image is not None:
            clauses.append(f"{column}image_name GLOB ?")
            params.append(self.image)
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def image_rows(data_dir: DataDir, chosen: StatusFilter) -> QueryResult:
    """One row per image (account, region, image): its watermark, last sync and counts."""
    where, params = chosen.where()
    sql = f"SELECT {', '.join(IMAGE_COLUMNS)} FROM sync_state{where} ORDER BY ALL"
    return run_query(data_dir, sql, params)


def target_rows(data_dir: DataDir, chosen: StatusFilter) -> QueryResult:
    """One row per target: its account's images and live versions, its last sync and last
    failure, and its account's learned API rate."""
    where, params = chosen.where("t")
    result = run_query(data_dir, f"{_TARGETS_SQL}{where} ORDER BY t.source, t.region", params)
    return _with_learned_rates(data_dir, result)


def _with_learned_rates(data_dir: DataDir, result: QueryResult) -> QueryResult:
    """`result` with the learned requests per second of each row's account (None when no
    recent sync found its limit, or the account is unknown)."""
    import duckdb

    rows = []
    for row in result.rows:
        region, account_id = row[1], row[2]
        learned = None
        if account_id is not None:
            learned = load_learned_rate(data_dir, account_key(account_id, region))
        rows.append((*row, None if learned is None else learned.rps))
    return QueryResult(
        [*result.columns, "learned_rps"], rows, [*result.types, duckdb.sqltypes.DOUBLE]
    )
