"""pipeline.cron.longest_interval against the ticks Dagster's own cron iterator gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from dagster._utils.schedules import cron_string_iterator

from pipeline.cron import longest_interval

START = datetime(2026, 1, 1, tzinfo=UTC)


def dagster_longest_gap(cron: str, ticks: int) -> timedelta:
    """The longest gap among the first `ticks` ticks from START, by Dagster's iterator."""
    times = cron_string_iterator(START.timestamp(), cron, "UTC")
    sample = [next(times) for _ in range(ticks)]
    return max(later - earlier for earlier, later in pairwise(sample))


@pytest.mark.parametrize(
    ("cron", "ticks", "expected"),
    [
        ("0 * * * *", 50, timedelta(hours=1)),
        ("@hourly", 50, timedelta(hours=1)),
        ("*/15 * * * *", 200, timedelta(minutes=15)),
        ("5,50 */6 * * *", 50, timedelta(hours=5, minutes=15)),
        ("30 2 * * *", 20, timedelta(days=1)),
        ("0 9 * * 1-5", 30, timedelta(days=3)),
        ("0 0 1,15 * sun", 60, timedelta(days=7)),  # either day field matches
        ("0 0 31 * *", 14, timedelta(days=61)),
        ("@monthly", 14, timedelta(days=31)),
    ],
)
def test_longest_interval_is_the_longest_gap_between_dagster_ticks(
    cron: str, ticks: int, expected: timedelta
) -> None:
    assert longest_interval(cron) == expected == dagster_longest_gap(cron, ticks)


def test_a_cron_that_never_ticks_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="never ticks"):
        longest_interval("0 0 31 4 *")
