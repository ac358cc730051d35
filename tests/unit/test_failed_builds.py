"""The failed-builds query (`pipeline.failed_builds`) over small real data dirs: which versions
entered CREATE_FAILED or DELETE_FAILED in the syncs recorded after an instant, each once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.committer import Committer
from pipeline.failed_builds import FailedBuilds, failed_builds, parse_since
from pipeline.model import Row
from pipeline.schema import from_ms, version_row
from pipeline.storage import DataDir
from tests.datasets import ACCOUNT, IMAGE, T0_MS, TARGET, image_state, version_record
from tests.support import REGION, START, stored_states

SECOND = 1000


def state(version: int, status: str, reason: str | None, observed_ms: int) -> Row:
    """A row of IMAGE's `version` in `status`, modified just before `observed_ms`."""
    record = {**version_record(version, observed_ms - 1, status), "FailureReason": reason}
    return version_row(
        IMAGE, record, observed_at_ms=observed_ms, image_account_region=(ACCOUNT, REGION)
    )


def sync(
    data_dir: DataDir, at_s: int, *changes: tuple[int, str, str | None], recorded: bool = True
) -> None:
    """One sync of IMAGE observing `changes` (version, status, reason) at T0 + `at_s` seconds,
    and its row of `sync_runs` two seconds later (none when killed before it: `recorded`)."""
    data_dir.prepare()
    observed = T0_MS + at_s * SECOND
    committer = Committer(data_dir, TARGET, stored_states(data_dir), flush_rows=10_000)
    rows = [state(version, status, reason, observed) for version, status, reason in changes]
    committer.add(rows, image_state(watermark_ms=observed - 1, last_synced_ms=observed))
    row = {
        "started_at": observed,
        "finished_at": observed + 2 * SECOND,
        "source": "lab",
        "account_id": ACCOUNT,
        "region": REGION,
        **dict.fromkeys(("images", "versions_new", "versions_changed"), 0),
        **dict.fromkeys(("versions_deleted", "api_calls", "throttled_retries"), 0),
        "seconds": 2.0,
        "ok": True,
        "error": None,
    }
    committer.commit(row if recorded else None)


def named(builds: FailedBuilds) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (r["version"], r["status"], r["failure_reason"], r["from_status"]) for r in builds.records()
    ]


def test_each_entry_into_a_failed_status_is_reported_for_the_sync_that_saw_it(
    data_dir: DataDir,
) -> None:
    sync(data_dir, 1, (1, "CREATED", None), (2, "CREATE_FAILED", "bad base"), (3, "CREATING", None))
    first = failed_builds(data_dir, START)
    assert named(first) == [(2, "CREATE_FAILED", "bad base", None)]
    assert first.through == from_ms(T0_MS + 3 * SECOND)

    sync(data_dir, 10, (1, "DELETE_FAILED", "in use"), (3, "CREATE_FAILED", "no space"))
    second = failed_builds(data_dir, first.through)  # version 2 stays failed: not again
    assert named(second) == [
        (1, "DELETE_FAILED", "in use", "CREATED"),
        (3, "CREATE_FAILED", "no space", "CREATING"),
    ]
    assert second.records()[0]["failed_at"] == "2026-03-01T12:00:10.000+00:00"

    sync(data_dir, 20)  # nothing changed
    third = failed_builds(data_dir, second.through)
    assert named(third) == [] and third.through == from_ms(T0_MS + 22 * SECOND)

    sync(data_dir, 30, (1, "CREATED", None))
    sync(data_dir, 40, (1, "DELETE_FAILED", "still in use"))  # failed again: reported again
    assert named(failed_builds(data_dir, third.through)) == [
        (1, "DELETE_FAILED", "still in use", "CREATED")
    ]
    assert len(failed_builds(data_dir, START).rows) == 4  # the whole history: every entry


def test_a_sync_killed_before_its_history_row_is_reported_with_the_next_sync(
    data_dir: DataDir,
) -> None:
    sync(data_dir, 1, (1, "CREATED", None))
    before = failed_builds(data_dir, START)
    sync(data_dir, 10, (1, "DELETE_FAILED", "in use"), recorded=False)
    waiting = failed_builds(data_dir, before.through)
    assert named(waiting) == [] and waiting.through == before.through

    sync(data_dir, 20)
    caught = failed_builds(data_dir, before.through)
    assert named(caught) == [(1, "DELETE_FAILED", "in use", "CREATED")]
    assert caught.records()[0]["recorded_at"] == "2026-03-01T12:00:22.000+00:00"
    assert named(failed_builds(data_dir, caught.through)) == []


def test_no_sync_yet_names_nothing(data_dir: DataDir) -> None:
    data_dir.prepare()
    builds = failed_builds(data_dir, START)
    assert builds.rows == [] and builds.through is None


NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("90m", NOW - timedelta(minutes=90)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-06-01", datetime(2026, 6, 1, tzinfo=UTC)),
        ("2026-06-01T08:30", datetime(2026, 6, 1, 8, 30, tzinfo=UTC)),
        ("2026-06-01T08:30+02:00", datetime(2026, 6, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_before_now_or_an_iso_instant(text: str, instant: datetime) -> None:
    assert parse_since(text, NOW) == instant


@pytest.mark.parametrize("text", ["yesterday", "24", "7 d", "-3h", "2026-13-01", ""])
def test_a_bad_since_says_which_forms_are_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 24h"):
        parse_since(text, NOW)
