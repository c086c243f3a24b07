"""Which analgesic classes (NSAID, opioid) a medication belongs to, from the codes and names EHRs send.

Read every RxNorm coding: a product code (SCD / SBD / packs) of the published value sets
(`drug_value_sets.py`: CDC / VSAC opioid sets, historical cds4cpm codes, NSAID products of the VSAC
non-opioid set, with their traps avoided), else an ingredient (IN / PIN) code, or a product code
(SCD / SBD / BN) from the hand-kept table of TERMINOLOGY.md 5; a combination counts for each of
its ingredients. Then the names: generic
names match with their salts ("naproxen sodium", "ketorolac tromethamine") and brand names
(Advil, Aleve, Toradol ...). A medication may be both an NSAID and an opioid (ibuprofen/oxycodone).

Not an analgesic trial: topical or ophthalmic NSAIDs, and aspirin at <= 100 mg (antiplatelet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.drug_value_sets import NSAID, OPIOID, judged_codes, published_products
from cds_service.clinical.reading import codings, describe_code, texts
from cds_service.clinical.text import any_phrase

__all__ = ["NSAID", "OPIOID", "analgesic_classes", "medication_concept", "product_codes"]
_ASPIRIN = re.compile(r"\baspirin\b|\bacetylsalicylic\b", re.IGNORECASE)
_MG = re.compile(r"(\d+(?:\.\d+)?)\s*mg\b", re.IGNORECASE)


@cache
def _product_classes() -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
    """(system, code) of a product -> (display, classes of its ingredients): the published value
    sets first (drug_value_sets.py), then the hand-kept table of TERMINOLOGY.md 5 for the codes
    they lack (brand names, products newer or older than the expansions)."""
    out = {
        key: (product.display, tuple(k for k in (NSAID, OPIOID) if k in product.classes))
        for key, product in published_products().items()
    }
    classes = valuesets.concepts("analgesics")
    for product in valuesets.load("analgesics")["products"]:
        key = (product["system"], product["code"])
        if key in judged_codes():
            continue
        found = tuple(
            k
            for k in (NSAID, OPIOID)
            if any(any_phrase(ingredient, classes[k].text) for ingredient in product["ingredients"])
        )
        out[key] = (product["display"], found)
    return out


def product_codes() -> frozenset[tuple[str, str]]:
    """Every product code recognised as an NSAID or opioid (for the relevance pre-filter)."""
    return frozenset(key for key, (_, found) in _product_classes().items() if found)


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
    medication = medications.get(reference) or medications.get(f"Medication/{reference.rsplit('/', 1)[-1]}")
    return medication.code if medication is not None else None


def _usage_texts(resource: Any, concept: Any) -> list[str]:
    out = texts(concept)
    for dosage in getattr(resource, "dosageInstruction", None) or getattr(resource, "dosage", None) or []:
        if dosage.text:
            out.append(dosage.text)
        out += texts(dosage.route)
    return out


def _only_low_dose_aspirin(all_texts: list[str], limit_mg: float, nsaid_text: re.Pattern[str] | None) -> bool:
    joined = " ".join(all_texts)
    if not _ASPIRIN.search(joined):
        return False
    other_nsaid = any(
        m.group(0).lower() not in ("aspirin", "acetylsalicylic")
        for m in (nsaid_text.finditer(joined) if nsaid_text else [])
    )
    doses = [float(m.group(1)) for m in _MG.finditer(joined)]
    return not other_nsaid and bool(doses) and max(doses) <= limit_mg


def analgesic_classes(resource: Any, medications: Mapping[str, Any]) -> dict[str, str]:
    """{"nsaid": how recognised, "opioid": how recognised} for a MedicationRequest / Statement."""
    concept = medication_concept(resource, medications)
    classes = valuesets.concepts("analgesics")
    found: dict[str, str] = {}
    for coding in codings(concept):
        for key in (NSAID, OPIOID):
            if key not in found and classes[key].match_code(coding.system, coding.code):
                found[key] = describe_code(
                    coding.system, coding.code, classes[key].codes.get((coding.system, coding.code))
                )
        product = _product_classes().get((coding.system, coding.code))
        if product:
            display, product_classes = product
            for key in product_classes:
                found.setdefault(key, describe_code(coding.system, coding.code, display))
    for text in texts(concept):
        for key in (NSAID, OPIOID):
            if key not in found and any_phrase(text, classes[key].text):
                found[key] = f'text "{text}"'
    if NSAID in found:
        usage = _usage_texts(resource, concept)
        doc = valuesets.load("analgesics")
        if any(
            any_phrase(t, valuesets.phrases("analgesics", "notAnalgesicTrialText")) for t in usage
        ) or _only_low_dose_aspirin(usage, doc["aspirinAntiplateletMaxMg"], classes[NSAID].text):
            del found[NSAID]
    return found
