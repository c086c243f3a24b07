"""Prior spinal MRI (RULES.md 1): an ImagingStudy (status available / registered) that is an MRI
(DICOM modality MR at study or series level, or a spinal-MRI procedure code, which is MR by
definition) of the spine or cord (SNOMED body site, or spinal-MRI procedure code LOINC / CPT /
SNOMED). Records the regions covered and the contrast protocol; its date is `started`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import SpinalMri
from cds_service.clinical.reading import describe_code, evidence, texts
from cds_service.clinical.text import any_phrase

_USABLE = {"available", "registered"}
_SPINE_SITES = (
    "spine_whole",
    "spinal_cord",
    "cervical_spine",
    "thoracic_spine",
    "lumbar_spine",
    "cervicothoracic_spine",
    "lumbosacral_spine",
)
_CONTRAST_RANK = {"unspecified": 0, "without": 1, "with": 2, "without-and-with": 3}


def _procedure_table() -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["system"], p["code"]): p for p in valuesets.load("spinal_mri")["procedures"]}


def _is_mr(coding: Any) -> bool:
    return coding is not None and coding.system == valuesets.DICOM and coding.code == "MR"


def _site_regions(codings: Iterable[Any], free_texts: Iterable[str]) -> tuple[set[str], list[str]]:
    sites = valuesets.concepts("body_sites")
    regions: set[str] = set()
    matched: list[str] = []
    for coding in codings:
        for key in _SPINE_SITES:
            if coding is not None and sites[key].match_code(coding.system, coding.code):
                regions |= set(sites[key].extra["regions"])
                matched.append(
                    describe_code(coding.system, coding.code, sites[key].codes.get((coding.system, coding.code)))
                )
    if not regions:
        for text in free_texts:
            for key in _SPINE_SITES:
                if any_phrase(text, sites[key].text):
                    regions |= set(sites[key].extra["regions"])
                    matched.append(f'text "{text}"')
    return regions, matched


def spinal_mri_studies(imaging_studies: Iterable[Any]) -> list[SpinalMri]:
    procedures = _procedure_table()
    found: list[SpinalMri] = []
    for study in imaging_studies:
        if study.status not in _USABLE:
            continue
        series = study.series or []
        is_mr = any(_is_mr(c) for c in study.modality or []) or any(_is_mr(s.modality) for s in series)
        regions: set[str] = set()
        contrast = "unspecified"
        matched: list[str] = []
        for coding in (c for cc in study.procedureCode or [] for c in cc.coding or []):
            procedure = procedures.get((coding.system, coding.code))
            if procedure is None:
                continue
            if procedure["regions"]:
                is_mr = True  # a spinal-MRI procedure code is an MRI by definition
            regions |= set(procedure["regions"])
            if _CONTRAST_RANK[procedure["contrast"]] > _CONTRAST_RANK[contrast]:
                contrast = procedure["contrast"]
            matched.append(describe_code(coding.system, coding.code, procedure["display"]))
        site_regions, site_matches = _site_regions(
            [s.bodySite for s in series],
            [
                t
                for s in series
                for t in [s.description or ""] + ([s.bodySite.display] if s.bodySite and s.bodySite.display else [])
            ]
            + [study.description or ""]
            + [t for cc in study.procedureCode or [] for t in texts(cc)],
        )
        regions |= site_regions
        matched += site_matches
        if is_mr and regions:
            summary = "MRI of " + ", ".join(sorted(regions)) + " spine (" + "; ".join(dict.fromkeys(matched)) + ")"
            found.append(SpinalMri(evidence(study, summary), frozenset(regions), contrast))
    return found
