"""Back pain complaint rule (RULES.md 1).

From Conditions (SNOMED back-pain concepts, ICD-10 M54.x except M54.0x and M54.81, or text) that are
active, or whose onset / recording is inside the look-back window; and from Observations inside the
window: a chief complaint that mentions back / spine / neck pain, a pain score (> 0) located at the
back or spine, a pain-location observation naming the back or spine, or an observation whose code or
value is a back-pain finding.

And from the reason for the visit being charted (RULES.md 1), which is how Epic carries a chief
complaint: the Encounter named by `context.encounterId` (status not cancelled / entered-in-error),
its `reasonCode`, or a `reasonReference` to a back-pain Condition (not refuted / entered-in-error).
The visit's reason counts like an active Condition recorded today, whatever its date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import RECORDED, VISIT_REASON, Evidence, Finding
from cds_service.clinical.reading import (
    clinical_date,
    condition_is_active,
    condition_is_erroneous,
    evidence,
    match_codes,
    match_concept,
    observation_is_negative,
    observation_is_usable,
    observation_value_texts,
    period_start,
    texts,
    to_date,
    within_days,
)
from cds_service.clinical.text import affirmed_phrase, any_phrase


def _is_back_site(concept_value: Any) -> str | None:
    """A description of the back / spine / neck body site named by a CodeableConcept, or None."""
    for site in valuesets.concepts("body_sites").values():
        by_code = match_codes(concept_value, site)
        if by_code:
            return by_code
        for text in texts(concept_value):
            if any_phrase(text, site.text):
                return f'text "{text}"'
    return None


def _positive_score(observation: Any) -> bool:
    """A pain score of 0 is "no pain"; a score we cannot read as a number still counts."""
    value = observation.valueInteger
    if value is None and observation.valueQuantity is not None:
        value = observation.valueQuantity.value
    if value is None:
        return True
    return Decimal(str(value)) > 0


def _pain_location(observation: Any, location_codes: valuesets.Concept) -> str | None:
    """Back/spine named by a pain-location component."""
    for component in observation.component or []:
        if match_codes(component.code, location_codes):
            site = _is_back_site(component.valueCodeableConcept)
            if site:
                return site
            if component.valueString and _is_back_site_text(component.valueString):
                return f'text "{component.valueString}"'
    return None


def _is_back_site_text(text: str) -> bool:
    return any(any_phrase(text, site.text) for site in valuesets.concepts("body_sites").values())


def _observation_match(observation: Any, back_pain: valuesets.Concept) -> str | None:
    codes = valuesets.concepts("observation_codes")
    if match_codes(observation.code, codes["chief_complaint"]):
        by_code = match_codes(observation.valueCodeableConcept, back_pain)
        if by_code:
            return f"chief complaint: {by_code}"
        for text in observation_value_texts(observation):
            if affirmed_phrase(text, back_pain.text):
                return f'chief complaint: "{text}"'
        return None
    if match_codes(observation.code, codes["pain_score"]):
        if not _positive_score(observation):
            return None
        site = _is_back_site(observation.bodySite) or _pain_location(observation, codes["pain_location"])
        return f"pain score at {site}" if site else None
    if match_codes(observation.code, codes["pain_location"]):
        site = _is_back_site(observation.valueCodeableConcept)
        if site or (observation.valueString and _is_back_site_text(observation.valueString)):
            return f"pain location {site or repr(observation.valueString)}"
        return None
    if observation_is_negative(observation):
        return None
    return match_codes(observation.code, back_pain) or match_codes(observation.valueCodeableConcept, back_pain)


def back_pain_findings(
    conditions: Iterable[Any], observations: Iterable[Any], now: dt.date, lookback_days: int
) -> list[tuple[Finding, Any]]:
    """Back-pain findings, each with the resource it came from (later rules read its text)."""
    back_pain = valuesets.concepts("back_pain")["back_pain"]
    found: list[tuple[Finding, Any]] = []
    for condition in conditions:
        if condition_is_erroneous(condition):
            continue
        if not (condition_is_active(condition) or within_days(clinical_date(condition), now, lookback_days)):
            continue
        matched = match_concept(condition.code, back_pain)
        if matched:
            found.append((Finding(back_pain.key, back_pain.label, evidence(condition, matched)), condition))
    for observation in observations:
        if not observation_is_usable(observation) or not within_days(clinical_date(observation), now, lookback_days):
            continue
        matched = _observation_match(observation, back_pain)
        if matched:
            found.append((Finding(back_pain.key, back_pain.label, evidence(observation, matched)), observation))
    return found


_VISIT_NOT_HELD = frozenset({"cancelled", "entered-in-error"})


def _visit(encounters: Iterable[Any], encounter_id: str | None) -> Any:
    """The Encounter of `context.encounterId`, when it is among the resources and was held."""
    if not encounter_id:
        return None
    wanted = encounter_id.rsplit("/", 1)[-1]
    for encounter in encounters:
        if encounter.id == wanted and encounter.status not in _VISIT_NOT_HELD:
            return encounter
    return None


def visit_reason_findings(
    encounters: Iterable[Any], conditions: Iterable[Any], encounter_id: str | None, now: dt.date
) -> list[tuple[Finding, Any]]:
    """Back pain as the reason for the visit being charted, each with the resource it came from."""
    visit = _visit(encounters, encounter_id)
    if visit is None:
        return []
    back_pain = valuesets.concepts("back_pain")["back_pain"]
    found: list[tuple[Finding, Any]] = []
    for reason in visit.reasonCode or []:
        matched = match_concept(reason, back_pain)
        if matched:
            visit_date = to_date(period_start(visit.period)) or now
            item = Evidence("Encounter", visit.id, f"visit reason: {matched}", visit_date, VISIT_REASON, RECORDED)
            found.append((Finding(back_pain.key, back_pain.label, item), visit))
    by_reference = {f"Condition/{c.id}": c for c in conditions if c.id}
    for reference in visit.reasonReference or []:
        condition = by_reference.get(reference.reference or "")
        if condition is None or condition_is_erroneous(condition):
            continue
        matched = match_concept(condition.code, back_pain)
        if matched:
            item = evidence(condition, f"visit reason: {matched}", where=VISIT_REASON)
            found.append((Finding(back_pain.key, back_pain.label, item), condition))
    return found
