"""Value sets: the verified codes (and text phrases) of each clinical concept, loaded once from
the JSON files in `valuesets/`. Codes are strings, always.

ICD-10 codes (ICD-10-CM, WHO ICD-10, ICD-10-GM) are matched by normalised prefix: uppercase, dot
removed, so `G35` catches G35, G35.A ... G35.D and G35.x, and `M54` catches every M54 code that is not
excluded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"

SYSTEM_NAMES = {
    SNOMED: "SNOMED CT",
    LOINC: "LOINC",
    CPT: "CPT",
    RXNORM: "RxNorm",
    DICOM: "DICOM",
    ICD10CM: "ICD-10-CM",
    ICD10: "ICD-10",
}


def is_icd10_system(system: str | None) -> bool:
    """ICD-10-CM, WHO ICD-10 and national editions (e.g. ICD-10-GM), whose URIs all name icd-10."""
    if not system:
        return False
    lowered = system.lower()
    return "icd-10" in lowered or "icd10" in lowered


def normalise_icd10(code: str) -> str:
    return code.strip().upper().replace(".", "")


def system_name(system: str | None) -> str:
    if system is None:
        return "no system"
    if is_icd10_system(system) and system not in SYSTEM_NAMES:
        return "ICD-10"
    return SYSTEM_NAMES.get(system, system)


_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class PhraseGate:
    """Does a text contain any phrase of a (long) list, on word boundaries? The same answer as one
    regex of every phrase, faster: a phrase can only occur where its first word does, so the phrases
    are grouped by first word, and only the groups of the text's own words are searched. Most texts
    (vital signs, lab names) share no word with any phrase and cost one tokenisation."""

    by_first_word: dict[str, re.Pattern[str]]

    @classmethod
    def of(cls, phrases: list[str] | tuple[str, ...]) -> PhraseGate | None:
        if not phrases:
            return None
        groups: dict[str, list[str]] = {}
        for phrase in phrases:
            tokens = _TOKEN.findall(phrase.lower())
            if not tokens:
                raise ValueError(f"phrase without a word: {phrase!r}")
            groups.setdefault(tokens[0], []).append(phrase)
        return cls({word: pattern for word, group in groups.items() if (pattern := phrase_pattern(group)) is not None})

    def search(self, text: str) -> bool:
        for word in set(_TOKEN.findall(text.lower())):
            pattern = self.by_first_word.get(word)
            if pattern is not None and pattern.search(text) is not None:
                return True
        return False


def phrase_pattern(phrases: list[str] | tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any phrase on word boundaries, longest first."""
    if not phrases:
        return None
    ordered = sorted({p.lower() for p in phrases}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(p) for p in ordered) + r")(?![\w])", re.IGNORECASE)


@dataclass(frozen=True)
class Concept:
    """One clinical concept: its verified codes, ICD-10 prefixes and the text phrases that name it."""

    key: str
    label: str
    codes: dict[tuple[str, str], str]  # (system, code) -> display
    icd10_prefixes: tuple[str, ...] = ()
    icd10_exclude_prefixes: tuple[str, ...] = ()
    text: re.Pattern[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def match_code(self, system: str | None, code: str | None) -> bool:
        if not code:
            return False
        if system is not None and (system, code) in self.codes:
            return True
        if self.icd10_prefixes and is_icd10_system(system):
            normalised = normalise_icd10(code)
            return normalised.startswith(self.icd10_prefixes) and not normalised.startswith(self.icd10_exclude_prefixes)
        return False


def _concept(key: str, doc: dict[str, Any]) -> Concept:
    extra = {
        k: v for k, v in doc.items() if k not in {"label", "codes", "icd10Prefixes", "icd10ExcludePrefixes", "text"}
    }
    return Concept(
        key=key,
        label=doc["label"],
        codes={(c["system"], c["code"]): c.get("display", c["code"]) for c in doc.get("codes", [])},
        icd10_prefixes=tuple(normalise_icd10(p) for p in doc.get("icd10Prefixes", [])),
        icd10_exclude_prefixes=tuple(normalise_icd10(p) for p in doc.get("icd10ExcludePrefixes", [])),
        text=phrase_pattern(doc.get("text", [])),
        extra=extra,
    )


@cache
def load(name: str) -> dict[str, Any]:
    """The raw JSON document of value set `name` (cached: read once per process)."""
    text = resources.files("cds_service.clinical").joinpath("valuesets", f"{name}.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def concepts(name: str) -> dict[str, Concept]:
    """The concepts of value set `name`, by key."""
    return {key: _concept(key, doc) for key, doc in load(name).get("concepts", {}).items()}


@cache
def phrases(name: str, element: str) -> re.Pattern[str] | None:
    """A phrase list stored beside the concepts (e.g. `bilateralText`), as one regex."""
    return phrase_pattern(load(name).get(element, []))


@dataclass(frozen=True)
class Screen:
    """A quick test that *no* concept of a value set can match a resource, so the per-concept rules
    can be skipped. It only says "maybe": the rules still decide."""

    codes: frozenset[tuple[str, str]]
    icd10: bool
    text: PhraseGate | None

    def may_match(self, codings: Iterable[Any], texts: list[str]) -> bool:
        for coding in codings:
            if coding.code and (
                (coding.system, coding.code) in self.codes or (self.icd10 and is_icd10_system(coding.system))
            ):
                return True
        return bool(texts) and self.text is not None and self.text.search(" | ".join(texts))


@cache
def screen(name: str, *extra_phrases: str) -> Screen:
    """The screen of value set `name`; `extra_phrases` names phrase lists stored beside the concepts."""
    doc = load(name)
    concepts_doc = doc.get("concepts", {}).values()
    phrases_all = [p for c in concepts_doc for p in c.get("text", [])]
    for element in extra_phrases:
        phrases_all += doc.get(element, [])
    return Screen(
        codes=frozenset((c["system"], c["code"]) for concept in concepts_doc for c in concept.get("codes", [])),
        icd10=any(concept.get("icd10Prefixes") for concept in concepts_doc),
        text=PhraseGate.of(phrases_all),
    )


ALL_VALUE_SETS = (
    "multiple_sclerosis",
    "back_pain",
    "observation_codes",
    "body_sites",
    "red_flags",
    "cord_features",
    "mechanical_pattern",
    "spinal_mri",
    "analgesics",
    "drug_value_sets",
)


def warm_up() -> None:
    """Load and compile every value set (at start-up, so no request pays for it)."""
    for name in ALL_VALUE_SETS:
        concepts(name)
    from cds_service.clinical.drug_value_sets import published_products  # imports this module

    published_products()
