"""Small readers over `fhir.resources` models: codings, texts, dates, statuses, evidence.

They never raise on missing or odd elements: an element that is not there reads as nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from cds_service.clinical import facts
from cds_service.clinical.facts import Evidence
from cds_service.clinical.text import affirmed_phrase
from cds_service.clinical.valuesets import Concept, ConceptIndex, system_name


def codings(concept: Any) -> list[Any]:
    """The codings of a CodeableConcept (or of a list of them), in order."""
    if concept is None:
        return []
    if isinstance(concept, (list, tuple)):
        return [c for cc in concept for c in getattr(cc, "coding", None) or ()]
    return list(getattr(concept, "coding", None) or ())


def _add_texts(cc: Any, out: list[str]) -> None:
    text = getattr(cc, "text", None)
    if text:
        out.append(text)
    for coding in getattr(cc, "coding", None) or ():
        if coding.display:
            out.append(coding.display)


def texts(concept: Any) -> list[str]:
    """`text` and coding displays of a CodeableConcept (or a list of them)."""
    out: list[str] = []
    if concept is None:
        return out
    if isinstance(concept, (list, tuple)):
        for cc in concept:
            _add_texts(cc, out)
    else:
        _add_texts(concept, out)
    return out


def note_texts(resource: Any) -> list[str]:
    return [n.text for n in getattr(resource, "note", None) or [] if getattr(n, "text", None)]


def status_code(concept: Any) -> str | None:
    """The code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    for coding in codings(concept):
        if coding.code:
            return str(coding.code)
    return None


def to_date(value: Any) -> dt.date | None:
    """A FHIR date/dateTime (model value or partial-date string) as a calendar date."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        parts = value[:10].split("-")
        try:
            year = int(parts[0])
            month = int(parts[1]) if len(parts) > 1 else 1
            day = int(parts[2]) if len(parts) > 2 else 1
            return dt.date(year, month, day)
        except (ValueError, IndexError):
            return None
    return None


def period_start(period: Any) -> Any:
    return getattr(period, "start", None) if period is not None else None


# Condition.category codes (HL7 condition-category, US Core's health-concern), best first.
_CONDITION_CATEGORY_WHERE = (
    ("problem-list-item", facts.PROBLEM_LIST),
    ("encounter-diagnosis", facts.ENCOUNTER_DIAGNOSIS),
    ("health-concern", facts.HEALTH_CONCERN),
)
_WHERE_BY_TYPE: dict[str, str] = {
    "Observation": facts.OBSERVATION,
    "ImagingStudy": facts.IMAGING_STUDY,
    "DiagnosticReport": facts.RADIOLOGY_REPORT,
    "Procedure": facts.PROCEDURE_RECORD,
    "Encounter": facts.VISIT_REASON,
    "MedicationRequest": facts.MEDICATION_LIST,
    "MedicationStatement": facts.MEDICATION_LIST,
    "ServiceRequest": facts.ORDER_REASON,
}


def condition_where(condition: Any) -> str:
    """Where a Condition was recorded, from its category: problem list, encounter diagnosis ..."""
    found = {
        str(c.code)
        for c in codings(getattr(condition, "category", None))
        if c.code and (c.system is None or c.system.endswith("condition-category"))
    }
    return next((where for code, where in _CONDITION_CATEGORY_WHERE if code in found), facts.CONDITION_RECORD)


def where_recorded(resource: Any) -> str:
    """Where `resource` was recorded, in clinical words (an Evidence's `where`)."""
    rt = resource.get_resource_type()
    if rt == "Condition":
        return condition_where(resource)
    return _WHERE_BY_TYPE.get(str(rt), str(rt))


def _first_dated(*candidates: tuple[Any, str]) -> tuple[dt.date | None, str]:
    """The first (value, label) whose value reads as a date, as (date, label); else (None, "")."""
    for value, label in candidates:
        date = to_date(value)
        if date is not None:
            return date, label
    return None, ""


def dated(resource: Any) -> tuple[dt.date | None, str]:
    """When a finding started or was observed, and what that date is (an Evidence's `date_label`):
    onset ("since"), else effective time ("observed"), else when it was recorded or reported."""
    rt = resource.get_resource_type()
    if rt == "Condition":
        return _first_dated(
            (resource.onsetDateTime, facts.SINCE),
            (period_start(resource.onsetPeriod), facts.SINCE),
            (resource.recordedDate, facts.RECORDED),
        )
    if rt == "Observation":
        return _first_dated(
            (resource.effectiveDateTime, facts.OBSERVED),
            (period_start(resource.effectivePeriod), facts.OBSERVED),
            (resource.effectiveInstant, facts.OBSERVED),
            (resource.issued, facts.REPORTED),
        )
    if rt == "ImagingStudy":
        return _first_dated((resource.started, facts.PERFORMED))
    if rt == "DiagnosticReport":
        return _first_dated(
            (resource.effectiveDateTime, facts.PERFORMED),
            (period_start(resource.effectivePeriod), facts.PERFORMED),
            (resource.issued, facts.REPORTED),
        )
    if rt == "Procedure":
        return _first_dated(
            (resource.performedDateTime, facts.PERFORMED),
            (period_start(resource.performedPeriod), facts.PERFORMED),
        )
    if rt == "Encounter":
        return _first_dated((period_start(resource.period), facts.RECORDED))
    if rt in ("MedicationRequest", "ServiceRequest"):
        return _first_dated((resource.authoredOn, facts.ORDERED))
    if rt == "MedicationStatement":
        return _first_dated(
            (resource.effectiveDateTime, facts.STARTED),
            (period_start(resource.effectivePeriod), facts.STARTED),
            (resource.dateAsserted, facts.RECORDED),
        )
    return None, ""


def clinical_date(resource: Any) -> dt.date | None:
    """The date of `dated` alone (what the rules compare with their windows)."""
    return dated(resource)[0]


def evidence(resource: Any, matched: str, where: str | None = None) -> Evidence:
    """The evidence of a fact found in `resource`; `where` overrides where it was recorded (e.g. a
    Condition named as a visit's reason is evidence from the visit reason)."""
    date, date_label = dated(resource)
    return Evidence(
        resource_type=resource.get_resource_type(),
        resource_id=getattr(resource, "id", None),
        matched=matched,
        date=date,
        where=where or where_recorded(resource),
        date_label=date_label,
    )


def describe_code(system: str | None, code: str, display: str | None) -> str:
    label = f"{system_name(system)} {code}"
    return f"{label} {display}" if display else label


def code_match(codings_seen: list[Any], concept: Concept) -> str | None:
    """A description of the first of `codings_seen` that is in `concept`, or None."""
    for coding in codings_seen:
        if coding.code and concept.match_code(coding.system, coding.code):
            display = concept.codes.get((coding.system, coding.code)) or coding.display
            return describe_code(coding.system, coding.code, display)
    return None


def text_match(texts_seen: list[str], concept: Concept) -> str | None:
    """`text "…"` for the first of `texts_seen` that affirms a phrase of `concept`, or None."""
    if concept.text is None:
        return None
    for text in texts_seen:
        if affirmed_phrase(text, concept.text):
            return f'text "{text}"'
    return None


def add_coded(found: dict[str, str], index: ConceptIndex, codings_seen: list[Any]) -> None:
    """Record, for each concept of `index` not yet in `found`, the first of `codings_seen` it names."""
    for coding in codings_seen:
        for key in index.coded(coding.system, coding.code):
            if key not in found:
                display = index.by_key[key].codes.get((coding.system, coding.code)) or coding.display
                found[key] = describe_code(coding.system, coding.code, display)


def add_named(
    found: dict[str, str],
    index: ConceptIndex,
    texts_seen: list[str],
    affirms: Callable[[str, Concept], bool] | None = None,
) -> None:
    """Record, for each concept of `index` not yet in `found`, the first of `texts_seen` that affirms
    one of its phrases (`affirms` decides when given)."""
    for text in texts_seen:
        for concept in index.named_in(text):
            if concept.key in found:
                continue
            if affirms(text, concept) if affirms is not None else affirmed_phrase(text, concept.text):
                found[concept.key] = f'text "{text}"'


def match_codes(concept_value: Any, concept: Concept) -> str | None:
    """A description of the first coding of `concept_value` in `concept`, or None."""
    return code_match(codings(concept_value), concept)


def match_concept(concept_value: Any, concept: Concept) -> str | None:
    """Codes first; text (code.text and displays) only when no coding matches."""
    return match_codes(concept_value, concept) or text_match(texts(concept_value), concept)


# --- statuses ---------------------------------------------------------------------------------

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_NOT_TRUE = {"refuted", "entered-in-error"}
_USABLE_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
_NEGATIVE_VALUE = re.compile(r"^\s*(?:no|absent|negative|not present|none|denies|not detected)\b", re.IGNORECASE)


def condition_is_erroneous(condition: Any) -> bool:
    """Refuted or entered in error: never evidence of anything."""
    return status_code(condition.verificationStatus) in _NOT_TRUE


def condition_is_active(condition: Any) -> bool:
    """clinicalStatus active / recurrence / relapse, or absent; and not refuted or in error."""
    if condition_is_erroneous(condition):
        return False
    clinical = status_code(condition.clinicalStatus)
    return clinical is None or clinical in _ACTIVE_CLINICAL


def observation_is_usable(observation: Any) -> bool:
    return observation.status in _USABLE_OBSERVATION


def observation_is_negative(observation: Any) -> bool:
    """An observation that records the *absence* of its finding (valueBoolean false, "No", "Absent")."""
    if observation.valueBoolean is False:
        return True
    value_texts = texts(observation.valueCodeableConcept)
    if observation.valueString:
        value_texts.append(observation.valueString)
    return any(_NEGATIVE_VALUE.match(t) for t in value_texts)


def within_days(date: dt.date | None, now: dt.date, days: int) -> bool:
    """True when `date` lies in the `days` before `now` (a date in the future counts as now)."""
    return date is not None and (now - date).days <= days


def observation_value_texts(observation: Any) -> list[str]:
    out = texts(observation.valueCodeableConcept)
    if observation.valueString:
        out.append(observation.valueString)
    return out


def finding_code(resource: Any) -> Any:
    """What names the finding: a Condition's or Observation's code, a visit's reasons for the visit."""
    if resource.get_resource_type() == "Encounter":
        return resource.reasonCode
    return resource.code


def resource_texts(resource: Any) -> list[str]:
    """Every human-written text of a Condition, Observation or visit reason that rules may read."""
    out = texts(finding_code(resource)) + note_texts(resource)
    if resource.get_resource_type() == "Observation":
        out += observation_value_texts(resource)
        for component in resource.component or []:
            out += texts(component.valueCodeableConcept)
            if component.valueString:
                out.append(component.valueString)
    out += texts(getattr(resource, "bodySite", None))
    return out
