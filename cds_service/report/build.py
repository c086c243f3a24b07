"""Build the report's figures from the database: the aggregate queries (`queries.py`), run side by
side on separate connections (each is one GROUP BY pass; PostgreSQL runs them on separate cores),
then assembled into `ReportStats`. Nothing here reads a single card or patient."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import TextClause

from cds_service.report.period import Period
from cds_service.report.queries import statements
from cds_service.report.stats import BURDEN_BUCKETS, MonthBurden, ReasonKey, ReportStats, WeekCounts
from cds_service.storage.db import Storage

log = logging.getLogger("cds_service.report")


def _as_date(value: Any) -> dt.date:
    """A week bucket: a date (PostgreSQL) or "YYYY-MM-DD" (SQLite)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


async def _rows(storage: Storage, statement: TextClause, period: Period) -> list[tuple[Any, ...]]:
    async with storage.engine.connect() as connection:
        result = await connection.execute(statement, {"since": period.since, "until": period.until})
        return [tuple(row) for row in result.all()]


async def build_report(storage: Storage, period: Period, now: dt.datetime | None = None) -> ReportStats:
    """The raw figures of `period` (publish them with `publish.publish`)."""
    started = time.perf_counter()
    q = statements(storage.dialect)
    cards, patients, burden, answers, suggestions, delays, unmatched = await asyncio.gather(
        *(
            _rows(storage, statement, period)
            for statement in (
                q.cards,
                q.patients,
                q.burden,
                q.answers,
                q.suggestions,
                q.delays,
                q.unmatched_feedback,
            )
        )
    )
    report = ReportStats(period=period, generated_at=(now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    for service_id, level, week, issued, downgraded, raised_again in cards:
        stats = report.service(service_id).level(level)
        stats.issued += int(issued)
        stats.downgraded += int(downgraded or 0)
        stats.raised_again += int(raised_again or 0)
        stats.weeks.setdefault(_as_date(week), WeekCounts()).issued += int(issued)
    for service_id, level, count in patients:
        if level is None:
            report.service(service_id).patients = int(count)
        else:
            report.service(service_id).level(level).patients = int(count)
    for service_id, month, n_patients, n_cards, *buckets in burden:
        report.service(service_id).months[str(month)] = MonthBurden(
            str(month), int(n_patients), int(n_cards), dict(zip(BURDEN_BUCKETS, (int(b) for b in buckets), strict=True))
        )
    for service_id, level, week, outcome, system, code, display, count in answers:
        stats = report.service(service_id).level(level)
        week_counts = stats.weeks.setdefault(_as_date(week), WeekCounts())
        if outcome == "accepted":
            stats.accepted += int(count)
            week_counts.accepted += int(count)
        else:
            stats.overridden += int(count)
            week_counts.overridden += int(count)
            key = ReasonKey(system, code, display)
            stats.override_reasons[key] = stats.override_reasons.get(key, 0) + int(count)
    for service_id, level, label, picks in suggestions:
        stats = report.service(service_id).level(level)
        stats.accepted_suggestions[label] = stats.accepted_suggestions.get(label, 0) + int(picks)
    for service_id, level, answered, median_seconds in delays:
        stats = report.service(service_id).level(level)
        stats.answered_with_delay = int(answered)
        stats.median_seconds_to_feedback = round(float(median_seconds), 2)  # SQLite: julianday float error
    report.unmatched_feedback = int(unmatched[0][0]) if unmatched else 0
    log.info(
        "report built",
        extra={
            "services": len(report.services),
            "days": (period.until - period.since).days,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return report
