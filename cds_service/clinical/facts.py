"""The facts the rules reason about, each with the evidence that supports it.

These are plain frozen dataclasses: the output of fact extraction (`extract.py`) and the input of
the decision (`decision.py`). They hold no FHIR models, so a decision can be tested from facts alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

CERVICAL, THORACIC, LUMBAR = "cervical", "thoracic", "lumbar"
CORD_REGIONS = frozenset({CERVICAL, THORACIC})


# Where a piece of evidence was recorded, in the words a clinician uses (Evidence.where).
PROBLEM_LIST = "problem list"
ENCOUNTER_DIAGNOSIS = "encounter diagnosis"
HEALTH_CONCERN = "health concern"
CONDITION_RECORD = "condition record"  # a Condition with no (known) category
VISIT_REASON = "visit reason"
ORDER_REASON = "order reason"
RADIOLOGY_REPORT = "radiology report"
PROCEDURE_RECORD = "procedure record"
IMAGING_STUDY = "imaging study"
OBSERVATION = "observation"
MEDICATION_LIST = "medication list"

# What the evidence's date is (Evidence.date_label), from the date element it was read from.
SINCE = "since"  # onset
RECORDED = "recorded"
OBSERVED = "observed"
STARTED = "started"
ORDERED = "ordered"
PERFORMED = "performed"
REPORTED = "reported"


@dataclass(frozen=True)
class Evidence:
    """Where a fact was found: the resource, what matched in it, and its clinical date.

    `where` says in clinical words where it was recorded (PROBLEM_LIST, VISIT_REASON ...) and
    `date_label` what `date` is (SINCE an onset, RECORDED, OBSERVED ...): both for the card's text,
    which names no FHIR ids or raw codes. Empty only for evidence built by hand in tests."""

    resource_type: str
    resource_id: str | None
    matched: str
    date: dt.date | None
    where: str = ""
    date_label: str = ""

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}" if self.resource_id else f"{self.resource_type} (no id)"


@dataclass(frozen=True)
class Finding:
    """One clinical finding (a concept such as `weakness` or `lhermitte`) and its evidence."""

    concept: str
    label: str
    evidence: Evidence
    group: str = ""  # red flags: motor, gait, bladder, bowel, sensory, cord
    bilateral: bool = False


@dataclass(frozen=True)
class SpinalMri:
    """A prior spinal MRI: which spinal regions it covered and its contrast protocol."""

    evidence: Evidence
    regions: frozenset[str]
    contrast: str  # "without", "with", "without-and-with" or "unspecified"
    also_seen_as: tuple[Evidence, ...] = ()  # the same study's other records (its ImagingStudy, Procedure ...)

    @property
    def covers_cord(self) -> bool:
        return CORD_REGIONS <= self.regions


@dataclass(frozen=True)
class RuleSettings:
    """The configurable windows of RULES.md (defaults as agreed there)."""

    lookback_days: int = 90
    recent_mri_days: int = 90
    nsaid_trial_days: int = 14
    # An NSAID counts as a trial for this back pain only when started no earlier than this many days
    # before the back pain's onset (an NSAID started years before is for something else).
    nsaid_before_onset_days: int = 7


@dataclass(frozen=True)
class ClinicalFacts:
    """Everything the decision needs, extracted from one patient's data at one moment."""

    now: dt.date
    multiple_sclerosis: tuple[Finding, ...] = ()
    demyelinating_context: tuple[Finding, ...] = ()  # CIS / demyelinating disease: context, not MS
    back_pain: tuple[Finding, ...] = ()
    new_red_flags: tuple[Finding, ...] = ()
    chronic_red_flags: tuple[Finding, ...] = ()
    cord_features: tuple[Finding, ...] = ()
    poor_analgesic_response: tuple[Finding, ...] = ()
    mechanical_pattern: tuple[Finding, ...] = ()
    spinal_mri: tuple[SpinalMri, ...] = ()
    medications_assessed: bool = True
    settings: RuleSettings = field(default_factory=RuleSettings)

    @property
    def has_ms(self) -> bool:
        return bool(self.multiple_sclerosis)

    @property
    def has_back_pain(self) -> bool:
        return bool(self.back_pain)
