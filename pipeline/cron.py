"""Which cron strings Dagster's schedules accept, and how far apart their ticks can be,
decided without Dagster (pipeline/ must not import it).

Standard cron only: one of the @ macros, or five fields (minute hour day-of-month month
day-of-week), each a comma list of `*`, `N` or `N-M`, each optionally `/STEP`, months and
weekdays also by name. Dagster's croniter also takes its own extensions (L, #, ?, H, R); those
are refused here, being cron nothing else reads. tests/unit/test_config.py holds this module to
`dagster._utils.schedules.is_valid_cron_string`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import pairwise

from .errors import ImageVersionsError

__all__ = ["cron_problem", "longest_interval"]

_MACRO_FIELDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MACROS = frozenset(_MACRO_FIELDS)
_TERM = re.compile(
    r"(?:(?P<star>\*)|(?P<start>[0-9]+|[a-z]+)(?:-(?P<end>[0-9]+|[a-z]+))?)(?:/(?P<step>[0-9]+))?\Z"
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FEBRUARY = 2


class _Invalid(ImageVersionsError, ValueError):
    """Why a cron string is refused: a bad value, so a ValueError too."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)
    top_alias: int | None = None
    """A value above `high` that means `low` (weekday 7, Sunday)."""

    def value(self, text: str) -> int:
        number = int(text) if text.isdigit() else self.names.get(text)
        if number is None:
            raise _Invalid(f"{self.name} {text!r} is neither a number nor a {self.name} name")
        if number == self.top_alias:
            return self.low
        if not self.low <= number <= self.high:
            top = self.high if self.top_alias is None else self.top_alias
            raise _Invalid(f"{self.name} {number} is outside {self.low}-{top}")
        return number

    def values(self, text: str) -> set[int]:
        """The values the field's `text` (a comma list of terms) stands for."""
        values: set[int] = set()
        for term in text.split(","):
            values |= self._term_values(term)
        return values

    def _term_values(self, term: str) -> set[int]:
        """The values of one term, as croniter counts them: Dagster's schedules run on those."""
        match = _TERM.match(term)
        if not match:
            raise _Invalid(f"{self.name} {term!r} is not *, N or N-M, with an optional /STEP")
        step = 1 if match["step"] is None else int(match["step"])
        if step < 1:
            raise _Invalid(f"{self.name} step must be at least 1 in {term!r}")
        if match["star"]:
            start, end = self.low, self.high
        else:
            start = self.value(match["start"])
            if match["end"] is not None:
                end = self.value(match["end"])
            elif match["step"] is not None:
                end = self.high
            else:
                return {start}
        if start < end:
            return set(range(start, end + 1, step))
        if start == end:
            # croniter reads a range from a value to itself (`2-2`, `59/5`) as the whole cycle.
            return set(range(self.low, self.high + 1, step))
        # A reversed range wraps past the top; where it resumes at the bottom follows croniter's
        # arithmetic (one step late, except when the step lands exactly on the bottom).
        before_top = range(start, self.high + 1, step)
        last = before_top[-1]
        resume = self.low if last + step == self.high + 1 else self.low + step - (self.high - last)
        return {*before_top, *range(resume, end + 1, step)}


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, {name: n for n, name in enumerate(_MONTHS, start=1)}),
    _Field("day-of-week", 0, 6, {name: n for n, name in enumerate(_WEEKDAYS)}, top_alias=7),
)
_DAY, _MONTH, _WEEKDAY = 2, 3, 4
_LEAP_CYCLE = date(2000, 1, 1), date(2008, 1, 1)
"""Eight years from a leap century year: long enough to meet the longest gap any cron has
(February 29th's four years; a weekday rule repeats every week)."""


def cron_problem(cron: str) -> str | None:
    """Why Dagster would refuse `cron` as a schedule, or None when it is fine."""
    lowered = cron.lower()
    if lowered in MACROS:
        return None
    fields = lowered.split()
    if len(fields) != len(_FIELDS):
        return (
            f"it has {len(fields)} fields, not 5 (minute hour day-of-month month day-of-week) "
            f"or one of {', '.join(sorted(MACROS))}"
        )
    try:
        expanded = [spec.values(text) for spec, text in zip(_FIELDS, fields, strict=True)]
    except _Invalid as exc:
        return str(exc)
    if expanded[_MONTH] == {FEBRUARY} and expanded[_DAY] in ({30}, {31}):
        return "February has no 30th or 31st"
    return None


def longest_interval(cron: str) -> timedelta:
    """The longest time between two consecutive ticks of `cron` (valid: see `cron_problem`)
    in a time zone without daylight saving, as Dagster runs it in UTC.

    Days match as croniter counts them: when both day-of-month and day-of-week are restricted,
    a day matching either one matches. ValueError when the cron never ticks twice (a day that
    no month has, such as April 31).
    """
    fields = _MACRO_FIELDS.get(cron.lower(), cron.lower()).split()
    minute, hour, day, month, weekday = (
        spec.values(text) for spec, text in zip(_FIELDS, fields, strict=True)
    )
    either_day = fields[_DAY] != "*" and fields[_WEEKDAY] != "*"
    first, end = _LEAP_CYCLE
    days = []
    for offset in range((end - first).days):
        when = first + timedelta(days=offset)
        by_date, by_weekday = when.day in day, when.isoweekday() % 7 in weekday
        if when.month in month and (
            (by_date or by_weekday) if either_day else (by_date and by_weekday)
        ):
            days.append(offset)
    if len(days) < 2:
        raise ValueError(f"{cron!r} never ticks twice")
    in_day = sorted(h * 60 + m for h in hour for m in minute)
    gaps = [later - earlier for earlier, later in pairwise(in_day)]
    overnight = in_day[0] + 1440 - in_day[-1]
    gaps += [(later - earlier - 1) * 1440 + overnight for earlier, later in pairwise(days)]
    return timedelta(minutes=max(gaps))
