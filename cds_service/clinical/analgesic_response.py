"""Poor response to NSAIDs / rest (RULES.md 1).

Counts when an NSAID MedicationRequest or MedicationStatement started more than the NSAID-trial
period ago (default 14 days) while back pain is still active, or when the back-pain evidence says
"no relief", "not improved", "refractory".

NSAIDs are recognised in `medications.py` (codes, product table, names); topical and ophthalmic
NSAIDs and low-dose aspirin (<= 100 mg, antiplatelet) are not analgesic trials.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.medications import NSAID, analgesic_classes
from cds_service.clinical.reading import clinical_date, evidence, resource_texts
from cds_service.clinical.text import affirmed_phrase

_NOT_TAKEN = {"entered-in-error", "cancelled", "draft", "not-taken", "unknown", "intended"}


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
        name = analgesic_classes(use, medications).get(NSAID)
        if name:
            found.append(Finding("nsaid_trial", label, evidence(use, f"NSAID for more than {trial_days} days: {name}")))
    poor_response = valuesets.phrases("mechanical_pattern", "poorResponseText")
    for resource in back_pain_resources:
        text = next((t for t in resource_texts(resource) if affirmed_phrase(t, poor_response)), None)
        if text:
            found.append(Finding("no_relief", label, evidence(resource, f'text "{text}"')))
    return found
