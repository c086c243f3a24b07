"""The period a report covers: parsed from "30d", "8w" or an ISO date, and cut into calendar weeks.

Weeks start on Monday 00:00 UTC (ISO weeks), as the database queries bucket them; the first and last
week of a period are usually partial.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

MAX_DAYS = 3660  # ten years: a longer period is a typo
_RELATIVE = re.compile(r"^(\d{1,5})([dw])$")


class PeriodError(ValueError):
    """A period the report cannot cover (the message names the problem, never echoes more than the value)."""


@dataclass(frozen=True)
class Period:
    since: dt.datetime  # inclusive, UTC
    until: dt.datetime  # exclusive, UTC

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise PeriodError("period bounds must be timezone-aware")
        if self.since >= self.until:
            raise PeriodError("the period must start before it ends")
        if self.until - self.since > dt.timedelta(days=MAX_DAYS):
            raise PeriodError(f"the period may not exceed {MAX_DAYS} days")

    def weeks(self) -> list[dt.date]:
        """The Monday of every week the period touches, in order."""
        first = week_start(self.since.astimezone(dt.UTC).date())
        last = week_start((self.until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date())
        return [first + dt.timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]

    def months(self) -> list[str]:
        """Every calendar month ("YYYY-MM") the period touches, in order."""
        first = self.since.astimezone(dt.UTC).date().replace(day=1)
        last = (self.until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
        out, month = [], first
        while month <= last:
            out.append(f"{month.year:04d}-{month.month:02d}")
            month = (month + dt.timedelta(days=32)).replace(day=1)
        return out


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _instant(text: str, end_of_day: bool) -> dt.datetime:
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(f"not a date, date-time or NNd/NNw: {text[:40]!r}") from None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def parse_period(since: str, until: str | None, now: dt.datetime) -> Period:
    """`since`: "30d", "8w", "2026-10-01" or a date-time; `until`: a date (that whole day is included),
    a date-time (exclusive), or None for `now`."""
    end = _instant(until.strip(), end_of_day=True) if until else now.astimezone(dt.UTC)
    match = _RELATIVE.match(since.strip())
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise PeriodError("the period must be at least one day")
        start = end - (dt.timedelta(days=amount) if match.group(2) == "d" else dt.timedelta(weeks=amount))
    else:
        start = _instant(since.strip(), end_of_day=False)
    return Period(start, end)
