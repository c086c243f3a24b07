"""Which resources the rules could possibly use: a cheap test on each decoded resource, so a long
record (thousands of vital signs and lab results) goes no further than the decoder (not even to the
conformance check). It must never drop a resource a rule could use, so it is a superset of the rules
by construction:

* what it reads is what the rules read: the elements declared for the resource type in the reading
  contract (fhir/schema.py) whose types can name a clinical thing (texts, codings, concepts, notes;
  not quantities, periods, references, identifiers: `Element.names_things`), walked generically;
  there is no list of elements here;
* what it looks for is what the rules can recognise: any code, ICD-10 prefix or phrase of the value
  sets the rules match at any date (FINDINGS), the drug products and spinal-MRI codes the
  medication and imaging rules recognise (their own code sets), and the codes of the observations
  that only the back-pain rule reads, and only inside the look-back window (WINDOWED: chief
  complaint, pain score, pain location), dated by the rules' own clinical-date order
  (reading.clinical_date).

Kept: every Condition, ImagingStudy, Encounter and Medication (few, and read by several rules); an
Observation, DiagnosticReport, Procedure, MedicationRequest or MedicationStatement that names a
finding, drug or spinal MRI anywhere in what is declared of it, or (a medication) names its drug by
reference; an Observation with a windowed code dated inside the window (or undated). No rule reads
the Patient resource. A resource the typed decoder left to fhir.resources is always kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.medications import product_codes
from cds_service.clinical.reading import clinical_date, within_days
from cds_service.clinical.spinal_imaging import spinal_mri_codes
from cds_service.fhir import schema

FINDINGS = ("multiple_sclerosis", "back_pain", "red_flags", "cord_features", "mechanical_pattern", "analgesics")
WINDOWED = ("observation_codes",)
FINDING, WINDOW = 1, 2
_ALWAYS = frozenset({schema.Condition, schema.ImagingStudy, schema.Medication, schema.Encounter})
_NEVER = frozenset({schema.Patient})
_MEDICATION_USES = frozenset({schema.MedicationRequest, schema.MedicationStatement})
_MEMO_LIMIT = 20_000


def _can_name(hint: Any) -> bool:
    """Can an element of this declared type name a clinical thing: human-written text (FHIR
    `string`), or a complex type that can (`Element.names_things`), or an array of either."""
    if hint in (schema.String, schema.String | None):
        return True
    if isinstance(hint, type):
        return issubclass(hint, schema.Element) and hint.names_things
    return any(_can_name(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)


@cache
def _elements_read(cls: type[schema.Element]) -> tuple[str, ...]:
    """The elements of a declaration that can name something, from their declared types."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(name for name in cls.__struct_fields__ if _can_name(hints[name]))


@cache
def _reader(cls: type[schema.Element]) -> Callable[[Any], tuple[Any, ...]]:
    """Reads the elements of `_elements_read(cls)` off one struct, all at once (as a tuple)."""
    names = _elements_read(cls)
    if not names:
        return lambda struct: ()
    if len(names) == 1:
        name = names[0]
        return lambda struct: (getattr(struct, name),)
    return operator.attrgetter(*names)


@dataclass(frozen=True)
class RelevanceFilter:
    findings: valuesets.Vocabulary
    windowed: valuesets.Vocabulary

    @classmethod
    def from_value_sets(cls) -> RelevanceFilter:
        findings = valuesets.vocabulary(*FINDINGS)
        findings = dataclasses.replace(findings, codes=findings.codes | product_codes() | spinal_mri_codes())
        return cls(findings, valuesets.vocabulary(*WINDOWED))

    def selector(self, now: dt.date, lookback_days: int) -> Callable[[Any], bool]:
        """`keep` for one request, with that request's memory of the elements already judged: a long
        record repeats the same few codes thousands of times (nothing read from a patient's record
        outlives the call)."""
        memo: dict[Any, int] = {}
        return lambda resource: self.keep(resource, now, lookback_days, memo)

    def keep(self, resource: Any, now: dt.date, lookback_days: int, memo: dict[Any, int] | None = None) -> bool:
        if not isinstance(resource, schema.Resource):
            return True  # read by fhir.resources: rare, and never dropped
        kind = type(resource)
        if kind in _ALWAYS:
            return True
        if kind in _NEVER:
            return False
        if kind in _MEDICATION_USES and resource.medicationReference is not None:  # type: ignore[attr-defined]
            return True  # the drug is elsewhere: the rule resolves the reference
        memo = memo if memo is not None else {}
        # A long record repeats whole resources' worth of the same naming elements (the same vital
        # sign, the same lab test): judged once per distinct combination.
        named = (kind, _reader(kind)(resource))
        flags = memo.get(named)
        if flags is None:
            flags = self._flags(resource, memo)
            self._remember(memo, named, flags)
        if flags & FINDING:
            return True
        if flags & WINDOW:
            date = clinical_date(resource)
            return date is None or within_days(date, now, lookback_days)
        return False

    def _flags(self, struct: schema.Element, memo: dict[Any, int]) -> int:
        """FINDING | WINDOW for what is declared of `struct`, at any depth. Texts and concepts are
        judged once per distinct value (a long record repeats the same few), the rest afresh."""
        flags = 0
        if type(struct) is schema.Coding:
            flags |= FINDING if self.findings.names_code(struct.system, struct.code) else 0
            flags |= WINDOW if self.windowed.names_code(struct.system, struct.code) else 0
        for value in _reader(type(struct))(struct):
            if value is None:
                continue
            if type(value) is tuple:
                for item in value:
                    flags |= self._judged(item, memo)
            else:
                flags |= self._judged(value, memo)
            if flags & FINDING:
                return flags
        return flags

    def _judged(self, value: Any, memo: dict[Any, int]) -> int:
        kind = type(value)
        if kind is not str and kind is not schema.CodeableConcept:
            return self._flags(value, memo)
        flags = memo.get(value)
        if flags is None:
            flags = self._text(value) if kind is str else self._flags(value, memo)
            self._remember(memo, value, flags)
        return flags

    @staticmethod
    def _remember(memo: dict[Any, int], key: Any, flags: int) -> None:
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        memo[key] = flags

    def _text(self, text: str) -> int:
        return FINDING if self.findings.names_in(text) else 0
