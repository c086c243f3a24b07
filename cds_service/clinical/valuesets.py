"""Value sets: the verified codes (and text phrases) of each clinical concept, loaded once from
the JSON files in `valuesets/`. Codes are strings, always.

ICD-10 codes (ICD-10-CM, WHO ICD-10, ICD-10-GM) are matched by normalised prefix: uppercase, dot
removed, so `G35` catches G35, G35.A ... G35.D and G35.x, and `M54` catches every M54 code that is not
excluded.
"""

from __future__ import annotations

import json
import re
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
class ConceptIndex:
    """Which concepts of a value set a coding or a text names: look-ups built once from the value set.

    A coding is looked up by (system, code), and ICD-10 codes by prefix. A text can only affirm a
    phrase where the phrase's first word occurs, so the concepts are filed under the first words of
    their phrases: `named_in(text)` gives the concepts one of whose phrases begins with a word of
    the text (`also` files a concept under a phrase list stored beside the concepts too). Whether
    the text affirms the phrase is then the rule's question (clinical/text.py)."""

    concepts: tuple[Concept, ...]
    by_key: dict[str, Concept]
    by_code: dict[tuple[str, str], tuple[str, ...]]
    icd10: tuple[Concept, ...]
    by_first_word: dict[str, frozenset[str]]

    @classmethod
    def of(cls, name: str, also: tuple[tuple[str, str], ...] = ()) -> ConceptIndex:
        found = tuple(concepts(name).values())
        by_code: dict[tuple[str, str], list[str]] = {}
        by_word: dict[str, set[str]] = {}
        extra = {key: load(name).get(element, []) for key, element in also}
        for concept in found:
            for system_code in concept.codes:
                by_code.setdefault(system_code, []).append(concept.key)
            for phrase in load(name)["concepts"][concept.key].get("text", []) + extra.get(concept.key, []):
                by_word.setdefault(first_word(phrase), set()).add(concept.key)
        return cls(
            found,
            {c.key: c for c in found},
            {k: tuple(v) for k, v in by_code.items()},
            tuple(c for c in found if c.icd10_prefixes),
            {k: frozenset(v) for k, v in by_word.items()},
        )

    def coded(self, system: str | None, code: str | None) -> tuple[str, ...]:
        """The keys of the concepts this coding names, in value-set order."""
        if not code:
            return ()
        exact = self.by_code.get((system, code), ()) if system is not None else ()
        if not self.icd10 or not is_icd10_system(system):
            return exact
        by_prefix = {c.key for c in self.icd10 if c.match_code(system, code)}
        return tuple(c.key for c in self.concepts if c.key in exact or c.key in by_prefix)

    def named_in(self, text: str) -> list[Concept]:
        """The concepts with a phrase that begins with a word of `text`, in value-set order."""
        keys: set[str] = set()
        for word in _TOKEN.findall(text.lower()):
            found = self.by_first_word.get(word)
            if found is not None:
                keys.update(found)
        return [c for c in self.concepts if c.key in keys] if keys else []


def first_word(phrase: str) -> str:
    tokens = _TOKEN.findall(phrase.lower())
    if not tokens:
        raise ValueError(f"phrase without a word: {phrase!r}")
    return str(tokens[0])


@cache
def index(name: str, also: tuple[tuple[str, str], ...] = ()) -> ConceptIndex:
    """The concept index of value set `name` (built once per process)."""
    return ConceptIndex.of(name, also)


@dataclass(frozen=True)
class Vocabulary:
    """Every code, ICD-10 prefix and phrase of some value sets, wherever each stores them (concepts,
    product and procedure tables, phrase lists beside the concepts): what a rule reading those value
    sets could recognise at all."""

    codes: frozenset[tuple[str, str]]
    icd10_prefixes: tuple[str, ...]
    phrases: PhraseGate | None

    def names_code(self, system: str | None, code: str | None) -> bool:
        if not code:
            return False
        if (system, code) in self.codes:
            return True
        return (
            bool(self.icd10_prefixes)
            and is_icd10_system(system)
            and normalise_icd10(code).startswith(self.icd10_prefixes)
        )

    def names_in(self, text: str) -> bool:
        return self.phrases is not None and self.phrases.search(text)


def _walk_value_set(node: Any, key: str, codes: set[tuple[str, str]], prefixes: set[str], phrases: list[str]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            codes.add((node["system"], node["code"]))
        for k, v in node.items():
            _walk_value_set(v, k, codes, prefixes, phrases)
    elif isinstance(node, list):
        if key == "icd10Prefixes":
            prefixes.update(normalise_icd10(p) for p in node)
        elif key == "text" or key.endswith("Text"):
            phrases.extend(p for p in node if isinstance(p, str))
        else:
            for v in node:
                _walk_value_set(v, key, codes, prefixes, phrases)


@cache
def vocabulary(*names: str) -> Vocabulary:
    """The vocabulary of the value sets `names` (all of them when none is named)."""
    codes: set[tuple[str, str]] = set()
    prefixes: set[str] = set()
    phrases: list[str] = []
    for name in names or ALL_VALUE_SETS:
        _walk_value_set(load(name), "", codes, prefixes, phrases)
    return Vocabulary(frozenset(codes), tuple(sorted(prefixes)), PhraseGate.of(phrases))


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
