"""The pure parts of the report: periods and weeks, the suppression rules, the SVG chart."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from cds_service.report.html import CSS, CSS_HASH, render_html
from cds_service.report.period import Period, PeriodError, parse_period, week_start
from cds_service.report.publish import SUPPRESSED, OfferedReasons, PublicReport, parts_of_a_total, publish, rate, shown
from cds_service.report.stats import LevelStats, ReportStats, WeekCounts
from cds_service.report.svg import Series, rate_chart

NOW = dt.datetime(2026, 11, 25, 15, 30, tzinfo=dt.UTC)


def test_relative_and_absolute_periods() -> None:
    assert parse_period("30d", None, NOW) == Period(NOW - dt.timedelta(days=30), NOW)
    assert parse_period("8w", None, NOW) == Period(NOW - dt.timedelta(weeks=8), NOW)
    period = parse_period("2026-11-02", "2026-11-15", NOW)
    assert (period.since, period.until) == (
        dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 16, tzinfo=dt.UTC),
    )
    stamped = parse_period("2026-11-02T06:00:00+01:00", "2026-11-03T00:00:00Z", NOW)
    assert stamped.since == dt.datetime(2026, 11, 2, 5, tzinfo=dt.UTC)
    assert stamped.until == dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    assert parse_period("7d", "2026-11-15", NOW).since == dt.datetime(2026, 11, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize("since, until", [("soon", None), ("0d", None), ("2026-11-10", "2026-11-01"), ("99999d", None)])
def test_periods_the_report_refuses(since: str, until: str | None) -> None:
    with pytest.raises(PeriodError):
        parse_period(since, until, NOW)


def test_weeks_start_on_monday_utc_and_cover_the_period() -> None:
    assert week_start(dt.date(2026, 11, 8)) == dt.date(2026, 11, 2)  # Sunday -> its Monday
    assert week_start(dt.date(2026, 11, 9)) == dt.date(2026, 11, 9)
    period = parse_period("2026-11-04", "2026-11-16", NOW)  # Wednesday .. Monday
    assert period.weeks() == [dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16)]
    assert parse_period("2026-10-30", "2026-12-01", NOW).months() == ["2026-10", "2026-11", "2026-12"]
    assert Period(dt.datetime(2026, 11, 2, tzinfo=dt.UTC), dt.datetime(2026, 11, 9, tzinfo=dt.UTC)).weeks() == [
        dt.date(2026, 11, 2)
    ]


def test_counts_under_5_are_suppressed_and_rates_never_reveal_them() -> None:
    assert [shown(n) for n in (0, 1, 4, 5, 6)] == [SUPPRESSED, SUPPRESSED, SUPPRESSED, 5, 6]
    assert rate(4, 100) is None  # the rate would give the 4 back
    assert rate(5, 4) is None and rate(0, 0) is None
    assert rate(5, 20) == 0.25


def test_no_subtraction_gives_a_hidden_count_back() -> None:
    assert parts_of_a_total([10, 7, 3], total_shown=True) == [True, False, False]  # 20 - 10 - 7 = 3
    assert parts_of_a_total([10, 7, 3, 2], total_shown=True) == [True, True, False, False]  # 3 + 2: a sum only
    assert parts_of_a_total([10, 7, 0], total_shown=True) == [True, True, False]  # a 0 worked out tells nothing
    assert parts_of_a_total([10, 7], total_shown=False) == [True, False]  # else 10 + 7 gives the total
    assert parts_of_a_total([10, 3], total_shown=False) == [True, False]
    assert parts_of_a_total([4, 3], total_shown=True) == [False, False]


def _report_with(level: LevelStats) -> PublicReport:
    report = ReportStats(parse_period("2026-11-02", "2026-11-08", NOW), NOW)
    report.service("svc").levels[level.level] = level
    return publish(report, OfferedReasons("urn:x", {}))


def test_the_median_and_the_weeks_need_5_cards_behind_them() -> None:
    level = LevelStats("urgent", issued=40, accepted=30, overridden=4, answered_with_delay=4)
    level.median_seconds_to_feedback = 600.0
    level.weeks = {dt.date(2026, 11, 2): WeekCounts(issued=40, accepted=30, overridden=4)}
    (shown_level,) = _report_with(level).services[0].levels
    assert shown_level.median_minutes_to_feedback is None
    assert (shown_level.override_rate, shown_level.acceptance_rate) == (None, 0.75)
    assert [(w.acceptance_rate, w.override_rate) for w in shown_level.weeks] == [(0.75, None)]
    level.answered_with_delay = 5
    assert _report_with(level).services[0].levels[0].median_minutes_to_feedback == 10.0


def test_the_chart_breaks_at_suppressed_weeks_and_draws_nothing_external() -> None:
    weeks = ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    svg = rate_chart("a <title>", weeks, [Series("accepted", "accepted", [0.5, None, 0.25, 0.75])])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "a &lt;title&gt;" in svg and "<title>a <title>" not in svg
    assert svg.count("<polyline") == 1  # weeks 3-4; week 1 stands alone
    assert svg.count("<circle") == 3
    assert "href" not in svg and "url(" not in svg
    empty = rate_chart("t", weeks, [Series("accepted", "accepted", [None] * 4)])
    assert "no week with enough cards" in empty and "<circle" not in empty


def test_the_page_is_self_contained() -> None:
    report = ReportStats(parse_period("2026-11-02", "2026-11-08", NOW), NOW)
    report.service("svc").levels["urgent"] = LevelStats("urgent", issued=12, accepted=6)
    page = render_html(publish(report, OfferedReasons(None, {})))
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert not re.search(r"""(src|href)\s*=""", page)
    assert f"<style>{CSS}</style>" in page and CSS_HASH in page
    assert "http://www.w3.org/2000/svg" in page  # the SVG namespace: a name, never fetched
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
