"""A known history of cards and feedback, small enough to count by hand (the figures the tests expect
are worked out in the comments). Period: Monday 2026-11-02 to Sunday 2026-11-15, two ISO weeks.

patient-view (PV), level urgent, 16 cards to 8 patients:
  week 1: u0..u9, Tue 2026-11-03 08:00 + i*10 min, patients P0..P4 (two cards each);
          u0..u4 downgraded after an override; each offers suggestion "sug-u<i>" (MRI_LABEL).
          u0..u5 accepted (their suggestion) i+1 minutes after the card  -> 6 accepted
          u6..u8 overridden "already-evaluated", i+1 minutes after        -> 3 overridden
          u9 no feedback
  week 2: v0..v5, Tue 2026-11-10 08:00 + i*10 min, patients P5, P6, P7, P5, P6, P7;
          v0, v1 back at full level after an override (new red flag).
          v0 accepted after 1 min, then overridden "already-evaluated" after 10 min: its answer is the
             override (the latest), its time to feedback 1 min (the first);
          v1 "already-evaluated" (11 min), v2 "patient-declined" (12), v3 no reason (13),
          v4 a reason the card does not offer (14); v5 no feedback.
  -> accepted 6, overridden 8, no feedback 2; reasons: already-evaluated 5, patient-declined 1,
     none 1, other 1; downgraded 5, raised again 2; delays (min) 1..9, 1, 11..14: median 6.5 min;
     week 1: 10 issued, 6 accepted (60 %), 3 overridden (suppressed); week 2: 6 issued, 0 accepted,
     5 overridden (5/6).
PV, level baseline, 3 cards: b0 Wed 2026-11-04 09:00 (P0, accepted after 30 min), b1 Sun 2026-11-08
  23:59:59 (P1; still week 1), b2 Mon 2026-11-09 00:00:00 (P2; week 2).
PV alert burden, November: 19 cards, 8 patients; P0, P1, P2 had 3 cards, P3..P7 had 2.
order-sign (OS), level cord-features: c0..c6, Thu 2026-11-12 12:00, patients Q0..Q6, no feedback.
Outside the period (never counted): PV urgent x0 on Sun 2026-11-01 23:59:59 (accepted), x1 on Mon
  2026-11-16 00:00:00.
Feedback on cards never recorded: 5 entries on 2026-11-05 (counted as unmatched), 1 on 2026-11-20
  (outside the period).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cds_service.storage import CardRecord, FeedbackRecord, Storage, record_feedback, record_issued_cards

PV = "ms-back-pain-patient-view"
OS = "ms-back-pain-order-sign"
MRI_LABEL = "Order MRI cervical and thoracic spine without and with contrast"
REASON_SYSTEM = "urn:ms-back-pain-cds:override-reason"
PATIENT_PREFIX = "pt-report-8c1f-"  # distinctive, so a leak anywhere is found by a plain search
COMMENT = "comment-that-must-never-be-shown-3e7a"


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def _reason(code: str, display: str, system: str = REASON_SYSTEM) -> dict[str, Any]:
    return {"system": system, "code": code, "display": display}


def _card(uuid: str, service: str, level: str, patient: str, at: dt.datetime, **extra: Any) -> CardRecord:
    return CardRecord(uuid, service, f"hook-{uuid}", PATIENT_PREFIX + patient, "critical", level, [], at, **extra)


async def record_known_history(storage: Storage) -> None:
    cards: list[CardRecord] = []
    pv: list[FeedbackRecord] = []
    minutes = dt.timedelta(minutes=1)
    for i in range(10):
        at = _utc(2026, 11, 3, 8) + 10 * i * minutes
        cards.append(
            _card(
                f"u{i}",
                PV,
                "urgent",
                f"P{i % 5}",
                at,
                fatigue_action="downgraded" if i < 5 else None,
                suggestions=[(f"sug-u{i}", MRI_LABEL)],
            )
        )
        if i <= 5:
            pv.append(FeedbackRecord(f"u{i}", "accepted", at + (i + 1) * minutes, accepted_suggestions=[f"sug-u{i}"]))
        elif i <= 8:
            pv.append(
                FeedbackRecord(
                    f"u{i}",
                    "overridden",
                    at + (i + 1) * minutes,
                    override_reason=_reason("already-evaluated", "Already evaluated"),
                    user_comment=COMMENT,
                )
            )
    reasons = [
        _reason("already-evaluated", "Already evaluated"),
        _reason("already-evaluated", "Already evaluated"),
        _reason("patient-declined", "Patient declined"),
        None,
        _reason("busy", "Too busy today", system="urn:some-ehr:reasons"),
    ]
    for i in range(6):
        at = _utc(2026, 11, 10, 8) + 10 * i * minutes
        cards.append(
            _card(
                f"v{i}",
                PV,
                "urgent",
                f"P{5 + i % 3}",
                at,
                fatigue_action="raised-again" if i < 2 else None,
                suggestions=[(f"sug-v{i}", MRI_LABEL)],
            )
        )
        if i < 5:
            pv.append(FeedbackRecord(f"v{i}", "overridden", at + (10 + i) * minutes, override_reason=reasons[i]))
    pv.append(FeedbackRecord("v0", "accepted", _utc(2026, 11, 10, 8, 1), accepted_suggestions=["sug-v0"]))
    for i, (patient, at) in enumerate(
        [("P0", _utc(2026, 11, 4, 9)), ("P1", _utc(2026, 11, 8, 23, 59, 59)), ("P2", _utc(2026, 11, 9))]
    ):
        cards.append(_card(f"b{i}", PV, "baseline", patient, at, suggestions=[(f"sug-b{i}", MRI_LABEL)]))
    pv.append(FeedbackRecord("b0", "accepted", _utc(2026, 11, 4, 9, 30), accepted_suggestions=["sug-b0"]))
    cards += [_card(f"c{i}", OS, "cord-features", f"Q{i}", _utc(2026, 11, 12, 12)) for i in range(7)]
    cards.append(_card("x0", PV, "urgent", "P0", _utc(2026, 11, 1, 23, 59, 59), suggestions=[("sug-x0", MRI_LABEL)]))
    cards.append(_card("x1", PV, "urgent", "P0", _utc(2026, 11, 16)))
    pv.append(FeedbackRecord("x0", "accepted", _utc(2026, 11, 2, 0, 5), accepted_suggestions=["sug-x0"]))
    pv += [
        FeedbackRecord(f"never-recorded-{i}", "overridden", _utc(2026, 11, 5, 10, i), user_comment=COMMENT)
        for i in range(5)
    ]
    pv.append(FeedbackRecord("never-recorded-late", "overridden", _utc(2026, 11, 20)))
    await record_issued_cards(storage, cards)
    await record_feedback(storage, PV, pv)
