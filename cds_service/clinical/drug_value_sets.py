"""RxNorm products -> analgesic class (NSAID, opioid) from the published value set expansions
(RULES.md 1; files and provenance in valuesets/published/, choices in valuesets/drug_value_sets.json).

Built once per process, as plain data (a dict from code to product); the rules only look codes up.
The traps of ../shared/clinical/valuesets/SOURCES.md 6 are avoided here:

* opioid analgesics: the CDC ambulatory-misuse set, "Opioids, All" and the Schedule II-IV set; the
  cds4cpm "Opioids" set (every opioid-containing product) only adds codes those lack (obsolete
  products still in records, e.g. 856907 Vicodin 5/500). A cough / cold combination or an
  opioid-use-disorder product (buprenorphine with naloxone, sublingual buprenorphine) is not an
  opioid analgesic, whichever set holds it.
* NSAID products: the "Non opioid pain medications" set minus every code of every opioid set (it
  holds 30 opioid products), kept only where the name has an NSAID ingredient in a systemic dose form
  (the set also holds lidocaine, capsaicin, antidepressants, topical and ophthalmic forms), and not
  low-dose aspirin alone (<= 100 mg: antiplatelet). An opioid product with an NSAID ingredient
  (ibuprofen / oxycodone) is both.
* Sets are identified by their `id` (the VSAC OID where there is one), never by `url`: the cds4cpm
  copies of VSAC sets carry the cds4cpm url.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from cds_service.clinical import valuesets

NSAID, OPIOID = "nsaid", "opioid"
_ASPIRIN_DOSE = re.compile(r"\baspirin\s+(\d+(?:\.\d+)?)\s*MG\b", re.IGNORECASE)


@dataclass(frozen=True)
class Product:
    """One RxNorm product of a published set: its name, its analgesic classes, and which set said so."""

    code: str
    display: str
    classes: frozenset[str]
    source: str


class ValueSetMismatch(ValueError):
    """A published file is not the value set its configuration names (checked by `id`)."""


def published_value_set(file: str, expected_id: str) -> dict[str, str]:
    """RxNorm code -> display of one published expansion, after checking its `id`."""
    text = resources.files("cds_service.clinical").joinpath("valuesets", "published", file).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    if document.get("resourceType") != "ValueSet" or document.get("id") != expected_id:
        raise ValueSetMismatch(f"{file}: expected ValueSet id {expected_id!r}, found {document.get('id')!r}")
    return {
        str(c["code"]): str(c.get("display", ""))
        for c in document["expansion"]["contains"]
        if c.get("system") == valuesets.RXNORM and c.get("code")
    }


def _sets(role: str) -> list[tuple[str, dict[str, str]]]:
    return [(s["name"], published_value_set(s["file"], s["id"])) for s in valuesets.load("drug_value_sets")[role]]


def _pattern(element: str) -> re.Pattern[str]:
    pattern = valuesets.phrases("drug_value_sets", element)
    if pattern is None:
        raise ValueError(f"drug_value_sets.{element} is empty")
    return pattern


@dataclass(frozen=True)
class _Names:
    """The name tests, compiled once."""

    nsaid: re.Pattern[str]
    opioid: re.Pattern[str]
    not_systemic: re.Pattern[str]
    not_analgesic_opioid: re.Pattern[str]
    opioid_use_disorder: tuple[re.Pattern[str], ...]
    aspirin_max_mg: float

    def is_nsaid_product(self, display: str) -> bool:
        """An NSAID ingredient, in a systemic form, and not aspirin alone at an antiplatelet dose."""
        ingredients = {m.group(0).lower() for m in self.nsaid.finditer(display)}
        if not ingredients or self.not_systemic.search(display):
            return False
        if ingredients == {"aspirin"}:
            doses = [float(m.group(1)) for m in _ASPIRIN_DOSE.finditer(display)]
            return not doses or max(doses) > self.aspirin_max_mg
        return True

    def is_opioid_analgesic(self, display: str) -> bool:
        """Not a cough / cold combination, nor an opioid-use-disorder product."""
        if self.not_analgesic_opioid.search(display):
            return False
        return not any(p.search(display) for p in self.opioid_use_disorder)


@cache
def _names() -> _Names:
    doc = valuesets.load("drug_value_sets")
    return _Names(
        nsaid=_pattern("nsaidIngredientText"),
        opioid=_pattern("opioidIngredientText"),
        not_systemic=_pattern("notSystemicDoseFormText"),
        not_analgesic_opioid=_pattern("notAnalgesicOpioidText"),
        opioid_use_disorder=tuple(re.compile(p, re.IGNORECASE) for p in doc["opioidUseDisorderPatterns"]),
        aspirin_max_mg=float(doc["aspirinAntiplateletMaxMg"]),
    )


def _first_source(code: str, sets: Iterable[tuple[str, dict[str, str]]]) -> tuple[str, str] | None:
    for name, members in sets:
        if code in members:
            return name, members[code]
    return None


@cache
def published_products() -> dict[tuple[str, str], Product]:
    """(RxNorm system, code) -> Product, for every opioid-analgesic and NSAID product of the sets."""
    names = _names()
    current = _sets("opioidAnalgesicSets")
    historical = _sets("historicalOpioidSets")
    non_opioid = _sets("nonOpioidPainSets")
    out: dict[tuple[str, str], Product] = {}
    opioid_codes = {code for _, members in current + historical for code in members}
    for code in sorted(opioid_codes):
        found = _first_source(code, current) or _first_source(code, historical)
        assert found is not None
        source, display = found
        classes = set()
        if names.is_opioid_analgesic(display):
            classes.add(OPIOID)
        if names.is_nsaid_product(display):
            classes.add(NSAID)  # e.g. ibuprofen / oxycodone: a combination counts for each ingredient
        if classes:
            out[(valuesets.RXNORM, code)] = Product(code, display, frozenset(classes), source)
    for source, members in non_opioid:
        for code, display in members.items():
            if code in opioid_codes or names.opioid.search(display):
                continue  # trap 1: the "non opioid" set holds opioid products
            if (valuesets.RXNORM, code) not in out and names.is_nsaid_product(display):
                out[(valuesets.RXNORM, code)] = Product(code, display, frozenset({NSAID}), source)
    return out


@cache
def judged_codes() -> frozenset[tuple[str, str]]:
    """Every RxNorm code of the published sets, recognised or not: their verdict stands (a code they
    hold and this module rejects, e.g. aspirin 81 MG, is not taken from a fall-back table)."""
    roles = ("opioidAnalgesicSets", "historicalOpioidSets", "nonOpioidPainSets")
    return frozenset((valuesets.RXNORM, code) for role in roles for _, members in _sets(role) for code in members)
