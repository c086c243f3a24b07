"""Build the report's figures from the database: the aggregate queries (`queries.py`), run side by
side on separate connections (each is one GROUP BY pass; PostgreSQL runs them on separate cores),
then assembled into `ReportStats`. Nothing here reads a single card or patient."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import TextClause, text

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


# PostgreSQL, for the report's transactions only: its hash aggregates and sorts of a year of cards
# need more than the 4 MB default (else they spill to disk), and JIT compiling costs ~100 ms per
# statement, more than it saves on these.
_POSTGRESQL_SETTINGS = (text("SET LOCAL work_mem = '128MB'"), text("SET LOCAL jit = off"))


# The patients statement: distinct (service, level, patient) read in the order of the index
# ix_issued_cards_service_id_level_patient_hash_issued_at, one group after the other, instead of
# hashing or sorting three text columns of every card (a year of 1,000,000 cards: 1.9 s instead of
# 6.4 s on the bench machine under load; 30 days of it: 0.6 s).
_STREAMED_GROUPS = (text("SET LOCAL enable_hashagg = off"), text("SET LOCAL enable_sort = off"))


async def _rows(
    storage: Storage, statement: TextClause, period: Period, settings: tuple[TextClause, ...] = ()
) -> list[tuple[Any, ...]]:
    async with storage.engine.connect() as connection, connection.begin():
        if storage.dialect == "postgresql":
            for setting in _POSTGRESQL_SETTINGS + settings:
                await connection.execute(setting)
        result = await connection.execute(statement, {"since": period.since, "until": period.until})
        return [tuple(row) for row in result.all()]


async def build_report(storage: Storage, period: Period, now: dt.datetime | None = None) -> ReportStats:
    """The raw figures of `period` (publish them with `publish.publish`)."""
    started = time.perf_counter()
    q = statements(storage.dialect)
    cards, patients, burden, answers, unmatched = await asyncio.gather(
        _rows(storage, q.cards, period),
        _rows(storage, q.patients, period, _STREAMED_GROUPS),
        _rows(storage, q.burden, period),
        _rows(storage, q.answers, period),
        _rows(storage, q.unmatched_feedback, period),
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
    for kind, service_id, level, week, outcome, system, code, text_value, count, median in answers:
        stats = report.service(service_id).level(level)
        if kind == "suggestion":  # text_value: the suggestion's label (None: not recorded on the card)
            stats.accepted_suggestions[text_value] = stats.accepted_suggestions.get(text_value, 0) + int(count)
        elif kind == "delay":
            stats.answered_with_delay = int(count)
            stats.median_seconds_to_feedback = round(float(median), 2)  # SQLite: julianday float error
        else:  # "outcome"; text_value: the override reason's display
            week_counts = stats.weeks.setdefault(_as_date(week), WeekCounts())
            if outcome == "accepted":
                stats.accepted += int(count)
                week_counts.accepted += int(count)
            else:
                stats.overridden += int(count)
                week_counts.overridden += int(count)
                key = ReasonKey(system, code, text_value)
                stats.override_reasons[key] = stats.override_reasons.get(key, 0) + int(count)
    report.unmatched_feedback = int(unmatched[0][0]) if unmatched else 0
    log.info(
        "report built",
        extra={
            "event": "report",
            "services": len(report.services),
            "days": (period.until - period.since).days,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return report
