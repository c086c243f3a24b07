"""Draft orders (order-select / order-sign): what each one is, and what it says about the patient.

An imaging order is recognised by its LOINC / CPT / SNOMED spinal-MRI code, or by modality and
body site (coded or in text): CT and X-ray of the spine have no verified codes in TERMINOLOGY.md, so
they are recognised by text ("X-ray", "XR", "radiograph", "CT") with a spinal body site. A medication
order is classified as NSAID and / or opioid (`medications.py`).

An order's own reasons count as evidence (RULES.md 3): a reasonCode naming MS or back pain counts
like an active Condition recorded today, with the order as its evidence.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import CORD_REGIONS, LUMBAR, ORDER_REASON, ORDERED, Evidence, Finding
from cds_service.clinical.medications import analgesic_classes
from cds_service.clinical.reading import codings, describe_code, match_concept, texts
from cds_service.clinical.text import any_phrase

MR, CT, XR = "MR", "CT", "XR"
_MODALITY_TEXT = [
    (MR, re.compile(r"\b(?:mri|mr|magnetic resonance)\b", re.IGNORECASE)),
    (CT, re.compile(r"\b(?:ct|computed tomography|cat scan)\b", re.IGNORECASE)),
    (XR, re.compile(r"\b(?:x-?ray|xr|radiograph\w*|plain film)\b", re.IGNORECASE)),
]
_CONTRAST_TEXT = [
    (
        "without-and-with",
        re.compile(
            r"\b(?:w/?o\s*(?:and|&|/|\+)\s*w/?|wo\s*(?:and|&|/|\+)\s*w|without\s+and\s+with|with\s+and\s+without|w/wo|wo/w|w\s*&\s*wo|pre\s*(?:and|&)\s*post)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "without",
        re.compile(
            r"\b(?:without contrast|w/o contrast|wo contrast|non-?contrast|no contrast|w/o\b|wo\b)", re.IGNORECASE
        ),
    ),
    (
        "with",
        re.compile(r"\b(?:with contrast|w/ contrast|w contrast|contrast-enhanced|with iv contrast)\b", re.IGNORECASE),
    ),
]
_SPINAL_SITES = (
    "spine_whole",
    "spinal_cord",
    "cervical_spine",
    "thoracic_spine",
    "lumbar_spine",
    "cervicothoracic_spine",
    "lumbosacral_spine",
)


@dataclass(frozen=True)
class ImagingOrder:
    modality: str  # MR, CT or XR
    regions: frozenset[str]
    contrast: str  # without, with, without-and-with, unspecified
    matched: str

    @property
    def lumbar_only(self) -> bool:
        return self.regions == frozenset({LUMBAR})

    @property
    def images_cord(self) -> bool:
        """Covers cervical or thoracic cord (the lumbar spine holds only the conus and cauda equina)."""
        return bool(self.regions & CORD_REGIONS)


@dataclass(frozen=True)
class DraftOrder:
    reference: str  # "ServiceRequest/abc", as named in selections
    resource_type: str
    imaging: ImagingOrder | None = None
    analgesic: Mapping[str, str] = field(default_factory=dict)  # class -> how recognised
    reason_texts: tuple[str, ...] = ()


def _regions_from_sites(concepts_value: Any) -> tuple[set[str], list[str]]:
    sites = valuesets.concepts("body_sites")
    regions: set[str] = set()
    matched: list[str] = []
    for coding in codings(concepts_value):
        for key in _SPINAL_SITES:
            if sites[key].match_code(coding.system, coding.code):
                regions |= set(sites[key].extra["regions"])
                matched.append(
                    describe_code(coding.system, coding.code, sites[key].codes.get((coding.system, coding.code)))
                )
    return regions, matched


def _regions_from_text(text: str) -> set[str]:
    sites = valuesets.concepts("body_sites")
    regions: set[str] = set()
    for key in _SPINAL_SITES:
        if any_phrase(text, sites[key].text):
            regions |= set(sites[key].extra["regions"])
    if not regions and re.search(r"\blumbar\b", text, re.IGNORECASE):
        regions.add(LUMBAR)
    return regions


def imaging_order(resource: Any) -> ImagingOrder | None:
    """The spinal imaging a ServiceRequest asks for, or None."""
    procedures = {(p["system"], p["code"]): p for p in valuesets.load("spinal_mri")["procedures"]}
    for coding in codings(resource.code):
        procedure = procedures.get((coding.system, coding.code))
        if procedure and procedure["regions"]:
            return ImagingOrder(
                MR,
                frozenset(procedure["regions"]),
                procedure["contrast"],
                describe_code(coding.system, coding.code, procedure["display"]),
            )
    words = " ".join(
        texts(resource.code)
        + texts(resource.bodySite)
        + ([resource.patientInstruction] if resource.patientInstruction else [])
    )
    modality = next((m for m, pattern in _MODALITY_TEXT if pattern.search(words)), None)
    if modality is None:
        return None
    regions, matched = _regions_from_sites(resource.bodySite)
    if not regions:  # a coded body site is more precise than the words of the order name
        regions = _regions_from_text(words)
    if not regions:
        return None
    contrast = next((c for c, pattern in _CONTRAST_TEXT if pattern.search(words)), "unspecified")
    label = "; ".join(matched) or f'text "{" ".join(texts(resource.code))}"'
    return ImagingOrder(modality, frozenset(regions), contrast, label)


def classify_order(resource: Any, medications: Mapping[str, Any]) -> DraftOrder:
    rt = resource.get_resource_type()
    reference = f"{rt}/{resource.id}"
    reason_texts = tuple(t for cc in getattr(resource, "reasonCode", None) or [] for t in texts(cc))
    if rt == "ServiceRequest":
        return DraftOrder(reference, rt, imaging=imaging_order(resource), reason_texts=reason_texts)
    if rt == "MedicationRequest":
        return DraftOrder(reference, rt, analgesic=analgesic_classes(resource, medications), reason_texts=reason_texts)
    return DraftOrder(reference, rt, reason_texts=reason_texts)


def _order_evidence(ref: tuple[str, str | None], matched: str, now: dt.date) -> Evidence:
    """A draft order's reason: evidence from the order being placed now."""
    return Evidence(*ref, f"order reason: {matched}", now, where=ORDER_REASON, date_label=ORDERED)


def order_reason_findings(orders: Iterable[Any], now: dt.date) -> tuple[list[Finding], list[Finding]]:
    """(MS findings, back-pain findings) from the orders' reasonCode: each counts like an active
    Condition recorded today, with the order as its evidence."""
    ms_concept = valuesets.concepts("multiple_sclerosis")["multiple_sclerosis"]
    not_ms = valuesets.concepts("multiple_sclerosis")["demyelinating_not_ms"]
    back = valuesets.concepts("back_pain")["back_pain"]
    ms: list[Finding] = []
    back_pain: list[Finding] = []
    for order in orders:
        reasons = getattr(order, "reasonCode", None) or []
        ref = (order.get_resource_type(), order.id)
        for reason in reasons:
            if match_concept(reason, not_ms) is None:
                matched = match_concept(reason, ms_concept)
                if matched:
                    ms.append(Finding(ms_concept.key, ms_concept.label, _order_evidence(ref, matched, now)))
            matched = match_concept(reason, back)
            if matched:
                back_pain.append(Finding(back.key, back.label, _order_evidence(ref, matched, now)))
    return ms, back_pain


def reason_conditions(orders: Iterable[Any], bundled: Mapping[str, Any]) -> list[Any]:
    """Conditions named by the orders' reasonReference and carried in the draft-orders Bundle."""
    out = []
    for order in orders:
        for ref in getattr(order, "reasonReference", None) or []:
            condition = bundled.get(ref.reference or "")
            if condition is not None and condition.get_resource_type() == "Condition":
                out.append(condition)
    return out
