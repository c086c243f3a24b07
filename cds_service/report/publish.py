"""From raw figures to what may be shown: small counts suppressed, rates only from shown counts.

The rules (the committee's page and its JSON both go through here, and only through here):
- every count under `THRESHOLD` (5), zero included, is shown as "<5";
- a rate is shown only when both its numerator and its denominator are shown, so no rate reveals a
  suppressed count; likewise a mean (cards per patient) or a median (time to feedback) only when
  the number of cards or patients behind it is shown;
- lists whose length could reveal something list every offered entry, and entries whose count is
  suppressed are ordered by name, not by their hidden size;
- no patient hash, card id, comment or free text from the EHR appears: override reasons are named
  by the card's own wording; a reason the card did not offer is pooled as "Other".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cds_service.report.stats import BURDEN_BUCKETS, LevelStats, ReasonKey, ReportStats, ServiceStats

THRESHOLD = 5
SUPPRESSED = "<5"
NO_REASON = "No reason given"
OTHER_REASON = "Other reason (not offered on the card)"
UNRECORDED_SUGGESTION = "Suggestion not recorded on the card (issued before revision 0004)"

Shown = int | str  # a count, or SUPPRESSED


def shown(count: int) -> Shown:
    return count if count >= THRESHOLD else SUPPRESSED


def rate(part: int, whole: int) -> float | None:
    """part / whole, or None when either is suppressed."""
    if part < THRESHOLD or whole < THRESHOLD:
        return None
    return round(part / whole, 4)


@dataclass(frozen=True)
class Item:
    label: str
    code: str | None
    count: Shown


@dataclass(frozen=True)
class Week:
    week_start: str  # the Monday, "YYYY-MM-DD"
    issued: Shown
    acceptance_rate: float | None
    override_rate: float | None


@dataclass(frozen=True)
class Level:
    level: str
    issued: Shown
    patients: Shown
    accepted: Shown
    acceptance_rate: float | None
    overridden: Shown
    override_rate: float | None
    no_feedback: Shown
    no_feedback_rate: float | None
    downgraded: Shown
    raised_again: Shown
    median_minutes_to_feedback: float | None
    accepted_suggestions: list[Item]
    override_reasons: list[Item]
    weeks: list[Week]


@dataclass(frozen=True)
class Month:
    month: str
    cards: Shown
    patients: Shown
    cards_per_patient: float | None
    patients_by_cards: dict[str, Shown]


@dataclass(frozen=True)
class Service:
    service_id: str
    issued: Shown
    patients: Shown
    levels: list[Level]
    months: list[Month]


@dataclass(frozen=True)
class PublicReport:
    since: str
    until: str
    generated_at: str
    suppression_threshold: int
    unmatched_feedback: Shown
    services: list[Service]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _items(counts: Iterable[tuple[str, str | None, int]]) -> list[Item]:
    """Shown counts first, largest first; then the suppressed ones by name."""
    rows = list(counts)
    big = sorted((r for r in rows if r[2] >= THRESHOLD), key=lambda r: (-r[2], r[0]))
    small = sorted((r for r in rows if r[2] < THRESHOLD), key=lambda r: r[0])
    return [Item(label, code, shown(count)) for label, code, count in big + small]


def offered_reasons(card_content: Mapping[str, Any]) -> dict[str, str]:
    """The override reasons the cards offer (code -> display), from the reviewed card wording."""
    return {str(r["code"]): str(r["display"]) for r in card_content.get("override_reasons", [])}


def _reasons(level: LevelStats, offered: Mapping[str, str], system: str | None) -> list[Item]:
    by_code = dict.fromkeys(offered, 0)
    none = other = 0
    for key, count in level.override_reasons.items():
        if _is_empty(key):
            none += count
        elif key.code is not None and key.code in offered and key.system in (None, system):
            by_code[key.code] += count
        else:
            other += count
    rows: list[tuple[str, str | None, int]] = [(offered[code], code, count) for code, count in by_code.items()]
    rows += [(NO_REASON, None, none), (OTHER_REASON, None, other)]
    return _items(rows)


def _is_empty(key: ReasonKey) -> bool:
    return key.code is None and key.system is None and key.display is None


def _weeks(level: LevelStats, weeks: list[dt.date]) -> list[Week]:
    out = []
    for monday in weeks:
        counts = level.weeks.get(monday)
        issued, accepted, overridden = (counts.issued, counts.accepted, counts.overridden) if counts else (0, 0, 0)
        out.append(Week(monday.isoformat(), shown(issued), rate(accepted, issued), rate(overridden, issued)))
    return out


def _level(level: LevelStats, weeks: list[dt.date], offered: Mapping[str, str], system: str | None) -> Level:
    median = level.median_seconds_to_feedback
    return Level(
        level=level.level,
        issued=shown(level.issued),
        patients=shown(level.patients),
        accepted=shown(level.accepted),
        acceptance_rate=rate(level.accepted, level.issued),
        overridden=shown(level.overridden),
        override_rate=rate(level.overridden, level.issued),
        no_feedback=shown(level.no_feedback),
        no_feedback_rate=rate(level.no_feedback, level.issued),
        downgraded=shown(level.downgraded),
        raised_again=shown(level.raised_again),
        median_minutes_to_feedback=round(median / 60, 1)
        if median is not None and level.answered_with_delay >= THRESHOLD
        else None,
        accepted_suggestions=_items(
            (label or UNRECORDED_SUGGESTION, None, count) for label, count in level.accepted_suggestions.items()
        ),
        override_reasons=_reasons(level, offered, system),
        weeks=_weeks(level, weeks),
    )


def _service(service: ServiceStats, report: ReportStats, offered: Mapping[str, str], system: str | None) -> Service:
    weeks = report.period.weeks()
    months = []
    for name in report.period.months():
        month = service.months.get(name)
        cards, patients = (month.cards, month.patients) if month else (0, 0)
        buckets = month.patients_by_cards if month else {}
        months.append(
            Month(
                month=name,
                cards=shown(cards),
                patients=shown(patients),
                cards_per_patient=round(cards / patients, 2) if patients >= THRESHOLD else None,
                patients_by_cards={bucket: shown(buckets.get(bucket, 0)) for bucket in BURDEN_BUCKETS},
            )
        )
    return Service(
        service_id=service.service_id,
        issued=shown(service.issued),
        patients=shown(service.patients),
        levels=[_level(level, weeks, offered, system) for level in service.ordered_levels()],
        months=months,
    )


def publish(report: ReportStats, card_content: Mapping[str, Any]) -> PublicReport:
    """What may be shown of `report`. `card_content`: the reviewed card wording (override reasons)."""
    offered = offered_reasons(card_content)
    system = card_content.get("override_reason_system", {}).get("uri")
    return PublicReport(
        since=report.period.since.isoformat(),
        until=report.period.until.isoformat(),
        generated_at=report.generated_at.isoformat(timespec="seconds"),
        suppression_threshold=THRESHOLD,
        unmatched_feedback=shown(report.unmatched_feedback),
        services=[_service(report.services[s], report, offered, system) for s in sorted(report.services)],
    )
