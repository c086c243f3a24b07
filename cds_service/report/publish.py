"""From raw figures to what may be shown: small counts suppressed, rates only from shown counts.

The rules (the committee's page and its JSON both go through here, and only through here):
- every count under `THRESHOLD` (5), zero included, is shown as "<5";
- where counts add up to a total (the levels' cards = the service's; accepted + overridden + no
  feedback = issued; the weeks' counts = the level's; the override reasons = overridden; the months'
  cards = the service's; patients by cards a month = patients) no subtraction may give a hidden 1-4
  back: another count is hidden too ("≥5", see `parts_of_a_total`); a rate or mean is shown only if
  the counts it comes from are;
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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cds_service.cards.content import CardContent
from cds_service.report.stats import BURDEN_BUCKETS, LevelStats, ReasonKey, ReportStats, ServiceStats

THRESHOLD = 5
SUPPRESSED = "<5"
HIDDEN = "≥5"  # a count of 5 or more hidden so that a "<5" beside it cannot be worked out by subtraction
NO_REASON = "No reason given"
OTHER_REASON = "Other reason (not offered on the card)"
UNRECORDED_SUGGESTION = "Suggestion not found on the recorded card (e.g. issued before revision 0004)"

Shown = int | str  # a count, or SUPPRESSED


def shown(count: int) -> Shown:
    return count if count >= THRESHOLD else SUPPRESSED


def rate(part: int, whole: int) -> float | None:
    """part / whole, or None when either is suppressed."""
    if part < THRESHOLD or whole < THRESHOLD:
        return None
    return round(part / whole, 4)


def parts_of_a_total(parts: list[int], total_shown: bool) -> list[bool]:
    """Which of `parts` (adding up to a total, shown or not) may be shown: complementary suppression.

    A part under 5 is never shown. When exactly one part is hidden, it is 1-4 and the total is
    shown, the total minus the shown parts would give it back: the smallest shown part is hidden
    too. (A hidden 0 worked out that way tells nothing about anyone: it is left.) When the total is
    not shown and every part is, their sum would give the total back: the smallest is hidden."""
    show = [part >= THRESHOLD for part in parts]
    hidden = [part for part, ok in zip(parts, show, strict=True) if not ok]
    exposed_part = total_shown and len(hidden) == 1 and hidden[0] > 0
    exposed_total = not total_shown and not hidden
    if any(show) and (exposed_part or exposed_total):
        smallest = min((part, i) for i, part in enumerate(parts) if show[i])[1]
        show[smallest] = False
    return show


def _part(count: int, show: bool) -> Shown:
    return count if show else (SUPPRESSED if count < THRESHOLD else HIDDEN)


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


def _items(rows: list[tuple[str, str | None, int]], total_shown: bool) -> list[Item]:
    """Parts of a total: the shown ones first, largest first; then the others by name (their order
    must not tell their size)."""
    show = parts_of_a_total([r[2] for r in rows], total_shown)
    big = sorted((r for r, s in zip(rows, show, strict=True) if s), key=lambda r: (-r[2], r[0]))
    small = sorted((r for r, s in zip(rows, show, strict=True) if not s), key=lambda r: r[0])
    return [Item(label, code, count) for label, code, count in big] + [
        Item(label, code, _part(count, False)) for label, code, count in small
    ]


@dataclass(frozen=True)
class OfferedReasons:
    """The override reasons the cards offer: their code system, and code -> display."""

    system: str | None
    displays: Mapping[str, str]


def offered_reasons(card_content: CardContent) -> OfferedReasons:
    """From the reviewed card wording (cards/*.toml)."""
    return OfferedReasons(
        card_content.override_reason_system.uri, {r.code: r.display for r in card_content.override_reasons}
    )


def _reasons(level: LevelStats, overridden_shown: bool, reasons: OfferedReasons) -> list[Item]:
    offered, system = reasons.displays, reasons.system
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
    return _items(rows, overridden_shown)


def _is_empty(key: ReasonKey) -> bool:
    return key.code is None and key.system is None and key.display is None


def _weeks(level: LevelStats, weeks: list[dt.date], shown_totals: tuple[bool, bool, bool]) -> list[Week]:
    """Week by week: cards issued, and the acceptance and override rates (each week's counts are
    parts of the level's issued, accepted and overridden: complementary suppression applies)."""
    counts = [level.weeks.get(monday) for monday in weeks]
    issued = [c.issued if c else 0 for c in counts]
    accepted = [c.accepted if c else 0 for c in counts]
    overridden = [c.overridden if c else 0 for c in counts]
    show_issued = parts_of_a_total(issued, shown_totals[0])
    show_accepted = parts_of_a_total(accepted, shown_totals[1])
    show_overridden = parts_of_a_total(overridden, shown_totals[2])
    return [
        Week(
            monday.isoformat(),
            _part(issued[i], show_issued[i]),
            rate(accepted[i], issued[i]) if show_issued[i] and show_accepted[i] else None,
            rate(overridden[i], issued[i]) if show_issued[i] and show_overridden[i] else None,
        )
        for i, monday in enumerate(weeks)
    ]


def _level(level: LevelStats, issued_shown: bool, weeks: list[dt.date], reasons: OfferedReasons) -> Level:
    median = level.median_seconds_to_feedback
    answers = [level.accepted, level.overridden, level.no_feedback]  # they add up to `issued`
    show_accepted, show_overridden, show_none = parts_of_a_total(answers, issued_shown)
    picks: list[tuple[str, str | None, int]] = [
        (label or UNRECORDED_SUGGESTION, None, count) for label, count in level.accepted_suggestions.items()
    ]
    return Level(
        level=level.level,
        issued=_part(level.issued, issued_shown),
        patients=shown(level.patients),
        accepted=_part(level.accepted, show_accepted),
        acceptance_rate=rate(level.accepted, level.issued) if show_accepted and issued_shown else None,
        overridden=_part(level.overridden, show_overridden),
        override_rate=rate(level.overridden, level.issued) if show_overridden and issued_shown else None,
        no_feedback=_part(level.no_feedback, show_none),
        no_feedback_rate=rate(level.no_feedback, level.issued) if show_none and issued_shown else None,
        downgraded=shown(level.downgraded),
        raised_again=shown(level.raised_again),
        median_minutes_to_feedback=round(median / 60, 1)
        if median is not None and level.answered_with_delay >= THRESHOLD
        else None,
        # One pick per accepted card (at-most-one suggestion): the picks are parts of `accepted`.
        accepted_suggestions=_items(picks, show_accepted),
        override_reasons=_reasons(level, show_overridden, reasons),
        weeks=_weeks(level, weeks, (issued_shown, show_accepted, show_overridden)),
    )


def _months(service: ServiceStats, report: ReportStats, issued_shown: bool) -> list[Month]:
    names = report.period.months()
    found = [service.months.get(name) for name in names]
    cards = [m.cards if m else 0 for m in found]
    show_cards = parts_of_a_total(cards, issued_shown)  # the months' cards add up to the service's
    months = []
    for i, (name, month) in enumerate(zip(names, found, strict=True)):
        patients = month.patients if month else 0
        buckets = [month.patients_by_cards.get(b, 0) if month else 0 for b in BURDEN_BUCKETS]
        show_buckets = parts_of_a_total(buckets, patients >= THRESHOLD)  # they add up to `patients`
        months.append(
            Month(
                month=name,
                cards=_part(cards[i], show_cards[i]),
                patients=shown(patients),
                cards_per_patient=round(cards[i] / patients, 2) if show_cards[i] and patients >= THRESHOLD else None,
                patients_by_cards={
                    bucket: _part(count, ok)
                    for bucket, count, ok in zip(BURDEN_BUCKETS, buckets, show_buckets, strict=True)
                },
            )
        )
    return months


def _service(service: ServiceStats, report: ReportStats, reasons: OfferedReasons) -> Service:
    weeks = report.period.weeks()
    levels = service.ordered_levels()
    # The levels' cards add up to the service's. With one level under 5 (every level listed has a
    # card), the service's total is hidden rather than a second level: the levels matter more.
    issued_shown = service.issued >= THRESHOLD and sum(lv.issued < THRESHOLD for lv in levels) != 1
    show_levels = parts_of_a_total([level.issued for level in levels], issued_shown)
    return Service(
        service_id=service.service_id,
        issued=_part(service.issued, issued_shown),
        patients=shown(service.patients),
        levels=[_level(lv, ok, weeks, reasons) for lv, ok in zip(levels, show_levels, strict=True)],
        months=_months(service, report, issued_shown),
    )


def publish(report: ReportStats, reasons: OfferedReasons) -> PublicReport:
    """What may be shown of `report`. `reasons`: the override reasons the cards offer
    (`offered_reasons(load_card_content(...))`), by which overrides are named."""
    return PublicReport(
        since=report.period.since.isoformat(),
        until=report.period.until.isoformat(),
        generated_at=report.generated_at.isoformat(timespec="seconds"),
        suppression_threshold=THRESHOLD,
        unmatched_feedback=shown(report.unmatched_feedback),
        services=[_service(report.services[s], report, reasons) for s in sorted(report.services)],
    )
