"""The report's figures on a known history (tests/report/history.py), on SQLite and on PostgreSQL:
the raw counts the SQL makes, then what may be shown of them ("<5", rates, weeks, burden)."""

from __future__ import annotations

import datetime as dt
import json

from cds_service.cards.content import load_card_content
from cds_service.report import build_report, parse_period, publish, render_html
from cds_service.report.publish import HIDDEN, NO_REASON, OTHER_REASON, SUPPRESSED, PublicReport, offered_reasons
from cds_service.report.stats import ReportStats
from tests.report.conftest import opened, run
from tests.report.history import COMMENT, MRI_LABEL, OS, PATIENT_PREFIX, PV, record_known_history

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
WEEK_1, WEEK_2 = dt.date(2026, 11, 2), dt.date(2026, 11, 9)


def _stats(url: str, since: str = "2026-11-02", until: str = "2026-11-15") -> tuple[ReportStats, list[str]]:
    """The figures of the known history, and the hashes of its patients."""

    async def scenario() -> tuple[ReportStats, list[str]]:
        async with opened(url) as storage:
            await record_known_history(storage)
            stats = await build_report(storage, parse_period(since, until, NOW), NOW)
            return stats, [storage.hash_patient(f"{PATIENT_PREFIX}P{i}") for i in range(8)]

    return run(scenario())


def test_the_sql_counts_exactly(database_url: str) -> None:
    stats, _ = _stats(database_url)
    assert set(stats.services) == {PV, OS}
    pv = stats.services[PV]
    assert (pv.issued, pv.patients) == (19, 8)
    assert [level.level for level in pv.ordered_levels()] == ["urgent", "baseline"]

    urgent = pv.levels["urgent"]
    assert (urgent.issued, urgent.patients) == (16, 8)
    assert (urgent.accepted, urgent.overridden, urgent.no_feedback) == (6, 8, 2)
    assert (urgent.downgraded, urgent.raised_again) == (5, 2)
    assert urgent.accepted_suggestions == {MRI_LABEL: 6}  # v0's acceptance was superseded by its override
    reasons = {(key.system, key.code): count for key, count in urgent.override_reasons.items()}
    assert reasons == {
        ("urn:ms-back-pain-cds:override-reason", "already-evaluated"): 5,
        ("urn:ms-back-pain-cds:override-reason", "patient-declined"): 1,
        (None, None): 1,
        ("urn:some-ehr:reasons", "busy"): 1,
    }
    assert urgent.answered_with_delay == 14
    assert urgent.median_seconds_to_feedback == 6.5 * 60
    assert {week: (w.issued, w.accepted, w.overridden) for week, w in urgent.weeks.items()} == {
        WEEK_1: (10, 6, 3),
        WEEK_2: (6, 0, 5),
    }

    baseline = pv.levels["baseline"]
    assert (baseline.issued, baseline.patients, baseline.accepted, baseline.overridden) == (3, 3, 1, 0)
    assert baseline.median_seconds_to_feedback == 30 * 60
    # Sunday 23:59:59 UTC is still week 1, Monday 00:00 UTC is week 2.
    assert {week: w.issued for week, w in baseline.weeks.items()} == {WEEK_1: 2, WEEK_2: 1}

    month = pv.months["2026-11"]
    assert (month.cards, month.patients) == (19, 8)
    assert month.patients_by_cards == {"1": 0, "2-3": 8, "4-9": 0, "10+": 0}

    os_service = stats.services[OS]
    cord = os_service.levels["cord-features"]
    assert (os_service.issued, os_service.patients) == (7, 7)
    assert (cord.issued, cord.patients, cord.accepted, cord.overridden, cord.no_feedback) == (7, 7, 0, 0, 7)
    assert cord.median_seconds_to_feedback is None
    assert os_service.months["2026-11"].patients_by_cards == {"1": 7, "2-3": 0, "4-9": 0, "10+": 0}

    assert stats.unmatched_feedback == 5


def test_what_is_shown_suppresses_every_count_under_5(database_url: str) -> None:
    public = publish(_stats(database_url)[0], offered_reasons(load_card_content()))
    assert public.suppression_threshold == 5
    assert public.unmatched_feedback == 5
    os_service, pv = public.services  # ordered by id
    # 19 = 16 urgent + 3 baseline: shown, the total would give the 3 back; it is hidden instead.
    assert (pv.service_id, pv.issued, pv.patients) == (PV, HIDDEN, 8)
    urgent, baseline = pv.levels

    assert (urgent.issued, urgent.patients) == (16, 8)
    # 16 = 6 accepted + 8 overridden + 2 without feedback: the 2 is "<5", and the 6 is hidden too
    # (else 16 - 6 - 8 gives the 2 back); so are their rates.
    assert (urgent.accepted, urgent.overridden, urgent.no_feedback) == (HIDDEN, 8, SUPPRESSED)
    assert (urgent.acceptance_rate, urgent.override_rate, urgent.no_feedback_rate) == (None, 0.5, None)
    assert (urgent.downgraded, urgent.raised_again) == (5, SUPPRESSED)
    assert urgent.median_minutes_to_feedback == 6.5
    assert [(i.label, i.count) for i in urgent.accepted_suggestions] == [(MRI_LABEL, HIDDEN)]  # = accepted
    # The card's own wording names the reasons; shown counts first, then the suppressed ones by name
    # (zero included: an offered reason nobody chose is "<5" too).
    assert [(i.label, i.code, i.count) for i in urgent.override_reasons] == [
        ("Already evaluated", "already-evaluated", 5),
        ("MRI contraindicated", "mri-contraindicated", SUPPRESSED),
        (NO_REASON, None, SUPPRESSED),
        ("Not clinically relevant", "not-clinically-relevant", SUPPRESSED),
        (OTHER_REASON, None, SUPPRESSED),
        ("Patient declined", "patient-declined", SUPPRESSED),
    ]
    # Week 1: 6 of 10 accepted (the level's total is hidden and week 2's 0 is not shown, so the
    # total stays unknown). Overrides 3 + 5 = 8, shown: the 3 is "<5", so week 2's 5 goes too.
    assert [(w.week_start, w.issued, w.acceptance_rate, w.override_rate) for w in urgent.weeks] == [
        ("2026-11-02", 10, 0.6, None),
        ("2026-11-09", 6, None, None),
    ]

    assert baseline.level == "baseline"
    assert (baseline.issued, baseline.patients, baseline.accepted, baseline.acceptance_rate) == (
        SUPPRESSED,
        SUPPRESSED,
        SUPPRESSED,
        None,
    )
    assert baseline.median_minutes_to_feedback is None  # one answer: a "median" would be that answer
    assert [(i.label, i.count) for i in baseline.accepted_suggestions] == [(MRI_LABEL, SUPPRESSED)]
    assert [(w.issued, w.acceptance_rate) for w in baseline.weeks] == [(SUPPRESSED, None), (SUPPRESSED, None)]

    (month,) = pv.months
    # One month: its cards are the service's total, hidden above; so is the mean that would give it.
    assert (month.month, month.cards, month.patients, month.cards_per_patient) == ("2026-11", HIDDEN, 8, None)
    assert month.patients_by_cards == {"1": SUPPRESSED, "2-3": 8, "4-9": SUPPRESSED, "10+": SUPPRESSED}

    (cord,) = os_service.levels
    assert (os_service.issued, cord.issued, cord.no_feedback, cord.no_feedback_rate) == (7, 7, 7, 1.0)
    assert (cord.accepted, cord.overridden) == (SUPPRESSED, SUPPRESSED)
    assert [w.issued for w in cord.weeks] == [SUPPRESSED, 7]  # 7 - 7 gives a 0 back: that tells nothing
    assert (os_service.months[0].cards, os_service.months[0].cards_per_patient) == (7, 1.0)


def _all_text(public: PublicReport) -> str:
    return json.dumps(public.to_json()) + render_html(public)


def test_no_patient_card_or_comment_appears(database_url: str) -> None:
    stats, hashes = _stats(database_url)
    text = _all_text(publish(stats, offered_reasons(load_card_content())))
    for secret in [PATIENT_PREFIX, COMMENT, "Too busy today", "busy", "sug-u0", "hook-u0", *hashes]:
        assert secret not in text
    for card in ("u0", "v5", "b1", "c3"):
        assert f'"{card}"' not in text and f">{card}<" not in text


def test_a_period_without_cards(database_url: str) -> None:
    public = publish(_stats(database_url, "2026-01-01", "2026-01-31")[0], offered_reasons(load_card_content()))
    assert public.services == [] and public.unmatched_feedback == SUPPRESSED
    assert "No card was issued in this period." in render_html(public)
