"""Poor response to NSAIDs / rest (RULES.md 1).

Counts when an NSAID MedicationRequest or MedicationStatement started more than the NSAID-trial
period ago (default 14 days) while back pain is still active, or when the back-pain evidence says
"no relief", "not improved", "refractory".

An NSAID is recognised by RxNorm ingredient code or by name (generic, salt or brand). Topical and
ophthalmic NSAIDs and low-dose aspirin (<= 100 mg, antiplatelet) are not analgesic trials.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable, Mapping

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import (
    clinical_date,
    evidence,
    match_codes,
    resource_texts,
    texts,
)
from cds_service.clinical.text import affirmed_phrase, any_phrase

_NOT_TAKEN = {"entered-in-error", "cancelled", "draft", "not-taken", "unknown", "intended"}
_ASPIRIN = re.compile(r"\baspirin\b|\bacetylsalicylic\b", re.IGNORECASE)
_MG = re.compile(r"(\d+(?:\.\d+)?)\s*mg\b", re.IGNORECASE)


def medication_concept(resource: Any, medications: Mapping[str, Any]) -> Any:
    """The CodeableConcept naming the drug: inline, or from a contained / bundled Medication."""
    if resource.medicationCodeableConcept is not None:
        return resource.medicationCodeableConcept
    reference = getattr(resource.medicationReference, "reference", None) or ""
    if reference.startswith("#"):
        for contained in resource.contained or []:
            if contained.get_resource_type() == "Medication" and contained.id == reference[1:]:
                return contained.code
        return None
    medication = medications.get(reference) or medications.get(reference.rsplit("/", 1)[-1])
    return medication.code if medication is not None else None


def _dose_texts(resource: Any, concept: Any) -> list[str]:
    out = texts(concept)
    for dosage in getattr(resource, "dosageInstruction", None) or getattr(resource, "dosage", None) or []:
        if dosage.text:
            out.append(dosage.text)
        out += texts(dosage.route)
    return out


def _low_dose_aspirin(all_texts: list[str], limit_mg: float) -> bool:
    joined = " ".join(all_texts)
    if not _ASPIRIN.search(joined):
        return False
    doses = [float(m.group(1)) for m in _MG.finditer(joined)]
    return bool(doses) and max(doses) <= limit_mg


def nsaid_name(resource: Any, medications: Mapping[str, Any]) -> str | None:
    """How the medication was recognised as a systemic NSAID, or None."""
    doc = valuesets.load("analgesics")
    nsaid = valuesets.concepts("analgesics")["nsaid"]
    concept = medication_concept(resource, medications)
    matched = match_codes(concept, nsaid)
    if not matched:
        name = next((t for t in texts(concept) if any_phrase(t, nsaid.text)), None)
        matched = f'text "{name}"' if name else None
    if not matched:
        return None
    all_texts = _dose_texts(resource, concept)
    if any(any_phrase(t, valuesets.phrases("analgesics", "notAnalgesicTrialText")) for t in all_texts):
        return None
    if _low_dose_aspirin(all_texts, doc["aspirinAntiplateletMaxMg"]):
        return None
    return matched


def poor_response_findings(
    medication_uses: Iterable[Any],
    medications: Mapping[str, Any],
    back_pain_resources: Iterable[Any],
    now: dt.date,
    trial_days: int,
) -> list[Finding]:
    label = "Poor response to NSAIDs / rest"
    found: list[Finding] = []
    back_pain_resources = list(back_pain_resources)
    if not back_pain_resources:
        return found
    for use in medication_uses:
        if use.status in _NOT_TAKEN:
            continue
        started = clinical_date(use)
        if started is None or (now - started).days <= trial_days:
            continue
        name = nsaid_name(use, medications)
        if name:
            found.append(Finding("nsaid_trial", label, evidence(use, f"NSAID for more than {trial_days} days: {name}")))
    poor_response = valuesets.phrases("mechanical_pattern", "poorResponseText")
    for resource in back_pain_resources:
        text = next((t for t in resource_texts(resource) if affirmed_phrase(t, poor_response)), None)
        if text:
            found.append(Finding("no_relief", label, evidence(resource, f'text "{text}"')))
    return found
