"""Poor response to NSAIDs / rest (RULES.md 1).

Counts when an NSAID MedicationRequest or MedicationStatement was started for this back pain and
has run for the NSAID-trial period (default 14 days) while back pain is still active, or when the
back-pain evidence says "no relief", "not improved", "refractory".

"For this back pain": the NSAID's start (authoredOn, effective start, or dateAsserted) is no earlier
than `before_onset_days` (default 7) before the back pain's onset, the earliest date of the
back-pain evidence (an onset, else when it was recorded or observed). An NSAID started before this
back pain began (years-old ibuprofen for another complaint) is not a trial of it; nor is one whose
start, or the back pain's onset, is unknown.

NSAIDs are recognised in `medications.py` (published value sets, ingredient codes, names); topical
and ophthalmic NSAIDs and low-dose aspirin (<= 100 mg, antiplatelet) are not analgesic trials.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.medications import NSAID, analgesic_classes
from cds_service.clinical.reading import clinical_date, evidence, resource_texts
from cds_service.clinical.text import affirmed_phrase

_NOT_TAKEN = {"entered-in-error", "cancelled", "draft", "not-taken", "unknown", "intended"}
LABEL = "Poor response to NSAIDs / rest"


def back_pain_onset(back_pain: Iterable[Finding]) -> dt.date | None:
    """The back pain's onset: the earliest date of its evidence, or None when none is dated."""
    dates = [f.evidence.date for f in back_pain if f.evidence.date is not None]
    return min(dates) if dates else None


def is_trial_of_this_back_pain(
    started: dt.date | None, onset: dt.date | None, now: dt.date, trial_days: int, before_onset_days: int
) -> bool:
    """Started no earlier than `before_onset_days` before the onset, and at least `trial_days` ago."""
    if started is None or onset is None:
        return False
    return (onset - started).days <= before_onset_days and (now - started).days >= trial_days


def poor_response_findings(
    medication_uses: Iterable[Any],
    medications: Mapping[str, Any],
    back_pain: Sequence[Finding],
    back_pain_resources: Iterable[Any],
    now: dt.date,
    trial_days: int,
    before_onset_days: int,
) -> list[Finding]:
    """`back_pain`: every back-pain finding (for the onset); `back_pain_resources`: the Conditions,
    Observations and visits they came from (whose texts may say "no relief")."""
    found: list[Finding] = []
    if not back_pain:  # "while back pain is still active"
        return found
    onset = back_pain_onset(back_pain)
    for use in medication_uses:
        if use.status in _NOT_TAKEN:
            continue
        if not is_trial_of_this_back_pain(clinical_date(use), onset, now, trial_days, before_onset_days):
            continue
        name = analgesic_classes(use, medications).get(NSAID)
        if name:
            found.append(Finding("nsaid_trial", LABEL, evidence(use, f"NSAID for {trial_days} days or more: {name}")))
    poor_response = valuesets.phrases("mechanical_pattern", "poorResponseText")
    for resource in back_pain_resources:
        text = next((t for t in resource_texts(resource) if affirmed_phrase(t, poor_response)), None)
        if text:
            found.append(Finding("no_relief", LABEL, evidence(resource, f'text "{text}"')))
    return found
