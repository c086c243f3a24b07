"""Which raw resources the rules could possibly use: a cheap test run on the JSON *before* the
expensive `fhir.resources` validation, so a long record (thousands of vital signs and lab results)
costs little. It must never drop a resource a rule could use: it is a superset of the rules.

Kept: every Condition, ImagingStudy, Encounter and Medication (few, and read by several rules); a
DiagnosticReport or Procedure coded as a spinal MRI (most of a record's reports are laboratory
results, most of its procedures not imaging); a
MedicationRequest / MedicationStatement whose drug could be an NSAID or opioid (or is referenced);
an Observation that carries a code or phrase of any finding the rules know (any date), or a chief
complaint / pain score / pain location inside the look-back window (the only rule reading those is
the back-pain rule, which only counts them inside the window). No rule reads the Patient resource.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.medications import product_codes
from cds_service.clinical.reading import to_date, within_days
from cds_service.clinical.spinal_imaging import spinal_mri_codes

# Every element a rule reads, for the resource types that come in bulk (reading.py and the rules).
ELEMENTS_READ = {
    "Observation": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "code",
            "subject",
            "bodySite",
            "note",
            "component",
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            "issued",
            "valueCodeableConcept",
            "valueString",
            "valueBoolean",
            "valueInteger",
            "valueQuantity",
        }
    ),
    "ImagingStudy": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "subject",
            "started",
            "modality",
            "procedureCode",
            "description",
            "series",
            "identifier",  # identifier, basedOn and procedureReference tie one study's records together
            "basedOn",
            "procedureReference",
        }
    ),
    # Every effective[x] / performed[x] stays, read or not (see Condition below).
    "DiagnosticReport": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "category",
            "code",
            "subject",
            "effectiveDateTime",
            "effectivePeriod",
            "issued",
            "identifier",
            "basedOn",
            "imagingStudy",
        }
    ),
    "Procedure": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "code",
            "subject",
            "bodySite",
            "performedDateTime",
            "performedPeriod",
            "performedString",
            "performedAge",
            "performedRange",
            "identifier",
            "basedOn",
            "report",
        }
    ),
    # class is not read but required (1..1).
    "Encounter": frozenset(
        {"resourceType", "id", "status", "class", "subject", "period", "reasonCode", "reasonReference"}
    ),
    # Every onset[x] and abatement[x] stays, read or not: two of one kind make the resource invalid.
    "Condition": frozenset(
        {
            "resourceType",
            "id",
            "clinicalStatus",
            "verificationStatus",
            "category",  # problem list or encounter diagnosis: where the evidence was recorded
            "code",
            "bodySite",
            "subject",
            "note",
            "recordedDate",
            "onsetDateTime",
            "onsetAge",
            "onsetPeriod",
            "onsetRange",
            "onsetString",
            "abatementDateTime",
            "abatementAge",
            "abatementPeriod",
            "abatementRange",
            "abatementString",
        }
    ),
    # intent is not read but required (1..1); a contained Medication may name the drug.
    "MedicationRequest": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "intent",
            "subject",
            "authoredOn",
            "dosageInstruction",
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
        }
    ),
    "MedicationStatement": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "subject",
            "effectiveDateTime",
            "effectivePeriod",
            "dateAsserted",
            "dosage",
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
        }
    ),
}
IMAGING_SERIES_ELEMENTS_READ = frozenset({"uid", "modality", "bodySite", "description"})
DOSAGE_ELEMENTS_READ = frozenset({"text", "route"})
_NESTED_READ = (
    ("series", IMAGING_SERIES_ELEMENTS_READ),
    ("dosageInstruction", DOSAGE_ELEMENTS_READ),
    ("dosage", DOSAGE_ELEMENTS_READ),
)
FINDING, WINDOW = 1, 2
_MEMO_LIMIT = 20_000
_ALWAYS = frozenset({"Condition", "ImagingStudy", "Medication", "Encounter"})
_CODED_AS_SPINAL_MRI = frozenset({"DiagnosticReport", "Procedure"})
_FINDING_SETS = ("multiple_sclerosis", "back_pain", "red_flags", "cord_features", "mechanical_pattern")
_EXTRA_PHRASES = (("cord_features", "shockText"), ("mechanical_pattern", "poorResponseText"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _system_code(coding: Any) -> tuple[str, str] | None:
    """(system, code) of a raw coding as the validated model would have them (parse.py writes a
    number as its string), or None when it has none a value set could match: JSON of any other
    shape (a list, an object) is no key, and reading it would be refused anyway."""
    if not isinstance(coding, dict):
        return None
    system, code = coding.get("system"), coding.get("code")
    code = str(code) if type(code) is int else code
    system = str(system) if type(system) is int else system
    return (system, code) if isinstance(system, str) and isinstance(code, str) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _codings(concept: Any) -> list[Any]:
    if isinstance(concept, dict):
        codings = concept.get("coding")
        return codings if isinstance(codings, list) else []
    return []


def _text_of(concept: Any, out: list[str]) -> None:
    if isinstance(concept, dict):
        if isinstance(concept.get("text"), str):
            out.append(concept["text"])
        for coding in _codings(concept):
            if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                out.append(coding["display"])


@dataclass(frozen=True)
class RelevanceFilter:
    finding_codes: frozenset[tuple[str, str]]
    icd10_prefixes: tuple[str, ...]
    finding_text: valuesets.PhraseGate
    window_codes: frozenset[tuple[str, str]]  # chief complaint, pain score, pain location
    drug_codes: frozenset[tuple[str, str]]
    drug_text: valuesets.PhraseGate
    spinal_mri_codes: frozenset[tuple[str, str]]

    @classmethod
    def from_value_sets(cls) -> RelevanceFilter:
        codes: set[tuple[str, str]] = set()
        prefixes: set[str] = set()
        phrases: list[str] = []
        for name in _FINDING_SETS:
            doc = valuesets.load(name)
            for concept in doc.get("concepts", {}).values():
                codes |= {(c["system"], c["code"]) for c in concept.get("codes", [])}
                prefixes |= {valuesets.normalise_icd10(p) for p in concept.get("icd10Prefixes", [])}
                phrases += concept.get("text", [])
        for name, element in _EXTRA_PHRASES:
            phrases += valuesets.load(name).get(element, [])
        window = {
            (c["system"], c["code"])
            for concept in valuesets.load("observation_codes")["concepts"].values()
            for c in concept["codes"]
        }
        analgesics = valuesets.load("analgesics")
        drug_codes = {(c["system"], c["code"]) for concept in analgesics["concepts"].values() for c in concept["codes"]}
        drug_codes |= product_codes()
        drug_phrases = [t for concept in analgesics["concepts"].values() for t in concept["text"]]
        finding_text = valuesets.PhraseGate.of(phrases)
        drug_text = valuesets.PhraseGate.of(drug_phrases)
        assert finding_text is not None and drug_text is not None
        return cls(
            frozenset(codes),
            tuple(sorted(prefixes)),
            finding_text,
            frozenset(window),
            frozenset(drug_codes),
            drug_text,
            spinal_mri_codes(),
        )

    def _has_finding_code(self, codings: list[Any]) -> bool:
        for coding in codings:
            pair = _system_code(coding)
            if pair is None:
                continue
            system, code = pair
            if pair in self.finding_codes:
                return True
            if valuesets.is_icd10_system(system) and valuesets.normalise_icd10(code).startswith(self.icd10_prefixes):
                return True
        return False

    def _medication(self, raw: dict[str, Any]) -> bool:
        if "medicationReference" in raw:
            return True  # the drug is elsewhere: keep it, the rule resolves the reference
        concept = raw.get("medicationCodeableConcept")
        if any(_system_code(coding) in self.drug_codes for coding in _codings(concept)):
            return True
        texts: list[str] = []
        _text_of(concept, texts)
        return bool(texts) and self.drug_text.search(" | ".join(texts))

    def _concept_flags(self, concept: Any, memo: dict[tuple[Any, ...], int], codes_count: bool = True) -> int:
        """FINDING | WINDOW for one CodeableConcept. A long record repeats the same few codes
        thousands of times, so the answer is remembered per distinct concept (for one request only:
        nothing read from a patient's record outlives the call)."""
        if not isinstance(concept, dict):
            return 0
        codings = _codings(concept)
        key = (
            codes_count,
            _str(concept.get("text")),
            tuple((_system_code(c), _str(c.get("display"))) if isinstance(c, dict) else None for c in codings),
        )
        flags = memo.get(key)
        if flags is None:
            flags = 0
            if codes_count and self._has_finding_code(codings):
                flags |= FINDING
            texts: list[str] = []
            _text_of(concept, texts)
            if texts and self.finding_text.search(" | ".join(texts)):
                flags |= FINDING
            if codes_count and any(_system_code(c) in self.window_codes for c in codings):
                flags |= WINDOW
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            memo[key] = flags
        return flags

    def _observation(
        self, raw: dict[str, Any], now: dt.date, lookback_days: int, memo: dict[tuple[Any, ...], int]
    ) -> bool:
        flags = self._concept_flags(raw.get("code"), memo) | self._concept_flags(raw.get("valueCodeableConcept"), memo)
        flags |= self._concept_flags(raw.get("bodySite"), memo, codes_count=False)  # a body site is not a finding
        texts: list[str] = []
        for component in _list(raw.get("component")):
            if isinstance(component, dict):
                flags |= self._concept_flags(component.get("code"), memo) | self._concept_flags(
                    component.get("valueCodeableConcept"), memo
                )
                if isinstance(component.get("valueString"), str):
                    texts.append(component["valueString"])
        if flags & FINDING:
            return True
        if isinstance(raw.get("valueString"), str):
            texts.append(raw["valueString"])
        texts += [n["text"] for n in _list(raw.get("note")) if isinstance(n, dict) and isinstance(n.get("text"), str)]
        if texts and self.finding_text.search(" | ".join(texts)):
            return True
        if flags & WINDOW:
            period = raw.get("effectivePeriod")
            start = period.get("start") if isinstance(period, dict) else None
            raw_date = raw.get("effectiveDateTime") or start or raw.get("effectiveInstant") or raw.get("issued")
            date = to_date(raw_date) if isinstance(raw_date, str) else None
            return date is None or within_days(date, now, lookback_days)
        return False

    def selector(self, now: dt.date, lookback_days: int) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        """`select` for one request (with that request's memory of the concepts already judged)."""
        memo: dict[tuple[Any, ...], int] = {}
        return lambda raw: self.select(raw, now, lookback_days, memo)

    def select(
        self, raw: dict[str, Any], now: dt.date, lookback_days: int, memo: dict[tuple[Any, ...], int] | None = None
    ) -> dict[str, Any] | None:
        """The part of `raw` worth validating, or None when no rule can use the resource.

        Observations, Conditions and ImagingStudies are cut down to the elements the rules read
        (narrative, performer, encounter, reference ranges, image instances ... are left out):
        validating less is faster and changes no decision."""
        if not self.keep(raw, now, lookback_days, memo if memo is not None else {}):
            return None
        elements = ELEMENTS_READ.get(_str(raw.get("resourceType")) or "")
        if elements is None:
            return raw
        trimmed = {k: v for k, v in raw.items() if k in elements}
        for name, kept in _NESTED_READ:
            if name in trimmed and isinstance(trimmed[name], list):  # e.g. not the (many) instances of a series
                trimmed[name] = [
                    {k: v for k, v in item.items() if k in kept} if isinstance(item, dict) else item
                    for item in trimmed[name]
                ]
        return trimmed

    def keep(
        self, raw: dict[str, Any], now: dt.date, lookback_days: int, memo: dict[tuple[Any, ...], int] | None = None
    ) -> bool:
        resource_type = _str(raw.get("resourceType"))
        if resource_type in _ALWAYS:
            return True
        if resource_type == "Observation":
            return self._observation(raw, now, lookback_days, memo if memo is not None else {})
        if resource_type in ("MedicationRequest", "MedicationStatement"):
            return self._medication(raw)
        if resource_type in _CODED_AS_SPINAL_MRI:
            return any(
                isinstance(c, dict)
                and isinstance(c.get("system"), str)
                and (c["system"], str(c.get("code"))) in self.spinal_mri_codes
                for c in _codings(raw.get("code"))
            )
        return False
