"""Prior spinal MRI (RULES.md 1), from the three ways an EHR records one:

* an ImagingStudy (status available / registered) that is an MRI (DICOM modality MR at study or
  series level, or a spinal-MRI procedure code, which is MR by definition) of the spine or cord
  (SNOMED body site, or spinal-MRI procedure code LOINC / CPT / SNOMED); dated by `started`;
* a radiology DiagnosticReport (category LOINC LP29684-5 Radiology, or HL7 v2-0074 RAD / NMR / MR;
  status registered / partial / preliminary / final / amended / corrected / appended) whose code is
  a spinal-MRI code (or LOINC 18756-7 "MRI Spine Report" naming the region in its text); dated by
  `effective[x]`, else `issued`;
* a Procedure (status completed / in-progress) whose code is a spinal-MRI code (the generic MRI
  code only with a spinal body site); dated by `performed[x]`.

Each records the regions covered and the contrast protocol.

One study seen several ways is one study (`one_per_study`): two records are the same study when
one names the other (DiagnosticReport.imagingStudy, ImagingStudy.procedureReference,
Procedure.report), when they share an order (basedOn a ServiceRequest: a care plan orders many
studies) or an identifier (e.g. the accession number),
or, with no such link, when they are dated the same day: one imaging session, which EHRs often
split into one report per region ("MR cervical spine", "MR thoracic spine" done together cover the
cord). Links join transitively. The study is shown as its report when there is one (then the
ImagingStudy, then the Procedure), dated by its earliest date (when it was done), covering every
region any of its records names, with the most complete contrast protocol; the other records are
kept in `also_seen_as`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Evidence, SpinalMri
from cds_service.clinical.reading import codings, describe_code, evidence, texts
from cds_service.clinical.text import any_phrase

_IMAGING_USABLE = frozenset({"available", "registered"})
_REPORT_USABLE = frozenset({"registered", "partial", "preliminary", "final", "amended", "corrected", "appended"})
_PROCEDURE_USABLE = frozenset({"completed", "in-progress"})
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
# Which record stands for a study seen several ways: the report first (what a clinician reads).
_PREFERENCE = {"DiagnosticReport": 0, "ImagingStudy": 1, "Procedure": 2}


@cache
def _procedure_table() -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["system"], p["code"]): p for p in valuesets.load("spinal_mri")["procedures"]}


@cache
def _report_titles() -> frozenset[tuple[str, str]]:
    """Report codes that say "MRI of the spine" without the region (the region is read from text)."""
    return frozenset((c["system"], c["code"]) for c in valuesets.load("spinal_mri")["reportTitles"])


@cache
def _radiology_categories() -> frozenset[tuple[str, str]]:
    return frozenset((c["system"], c["code"]) for c in valuesets.load("spinal_mri")["radiologyReportCategories"])


def spinal_mri_codes() -> frozenset[tuple[str, str]]:
    """Every code that can make a report or procedure a spinal MRI (for the relevance pre-filter)."""
    return frozenset(_procedure_table()) | _report_titles()


def _is_mr(coding: Any) -> bool:
    return coding is not None and coding.system == valuesets.DICOM and coding.code == "MR"


def _site_regions(codings_seen: Iterable[Any], free_texts: Iterable[str]) -> tuple[set[str], list[str]]:
    """Spinal regions named by body-site codings, else by texts."""
    sites = valuesets.concepts("body_sites")
    regions: set[str] = set()
    matched: list[str] = []
    for coding in codings_seen:
        for key in _SPINE_SITES:
            if coding is not None and sites[key].match_code(coding.system, coding.code):
                regions |= set(sites[key].extra["regions"])
                matched.append(
                    describe_code(coding.system, coding.code, sites[key].codes.get((coding.system, coding.code)))
                )
    if not regions:
        for text in free_texts:
            for key in _SPINE_SITES:
                if text and any_phrase(text, sites[key].text):
                    regions |= set(sites[key].extra["regions"])
                    matched.append(f'text "{text}"')
    return regions, matched


@dataclass
class _Coded:
    """What spinal-MRI procedure codes say: regions, contrast, whether any code is an MRI."""

    regions: set[str]
    contrast: str
    matched: list[str]
    is_mr: bool


def _procedure_codes(codings_seen: Iterable[Any]) -> _Coded:
    procedures = _procedure_table()
    coded = _Coded(set(), "unspecified", [], False)
    for coding in codings_seen:
        procedure = procedures.get((coding.system, coding.code))
        if procedure is None:
            continue
        coded.is_mr = True  # every code of the table is an MRI (the generic one needs a spinal site)
        coded.regions |= set(procedure["regions"])
        if _CONTRAST_RANK[procedure["contrast"]] > _CONTRAST_RANK[coded.contrast]:
            coded.contrast = procedure["contrast"]
        coded.matched.append(describe_code(coding.system, coding.code, procedure["display"]))
    return coded


def _summary(regions: set[str], matched: list[str]) -> str:
    return "MRI of " + ", ".join(sorted(regions)) + " spine (" + "; ".join(dict.fromkeys(matched)) + ")"


def _references(values: Any) -> list[str]:
    return [r.reference for r in values or [] if getattr(r, "reference", None)]


def _identifiers(resource: Any) -> list[str]:
    return [f"identifier {i.system or ''}|{i.value}" for i in getattr(resource, "identifier", None) or [] if i.value]


@dataclass(frozen=True)
class _Record:
    """One record of a spinal MRI, with the keys that tie it to the other records of its study."""

    study: SpinalMri
    keys: frozenset[str]


def _keys(resource: Any, *named: list[str]) -> frozenset[str]:
    own = f"{resource.get_resource_type()}/{resource.id}" if resource.id else f"(no id) {id(resource)}"
    orders = [r for r in _references(getattr(resource, "basedOn", None)) if r.startswith("ServiceRequest/")]
    out = {own, *_identifiers(resource), *orders}
    for references in named:
        out.update(references)
    return frozenset(out)


def _from_imaging_study(study: Any) -> _Record | None:
    if study.status not in _IMAGING_USABLE:
        return None
    series = study.series or []
    coded = _procedure_codes(c for cc in study.procedureCode or [] for c in cc.coding or [])
    is_mr = any(_is_mr(c) for c in study.modality or []) or any(_is_mr(s.modality) for s in series)
    is_mr = is_mr or (coded.is_mr and bool(coded.regions))
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
    regions = coded.regions | site_regions
    if not (is_mr and regions):
        return None
    found = SpinalMri(
        evidence(study, _summary(regions, coded.matched + site_matches)), frozenset(regions), coded.contrast
    )
    return _Record(found, _keys(study, [study.procedureReference.reference] if study.procedureReference else []))


def _is_radiology(report: Any) -> bool:
    categories = _radiology_categories()
    return any((c.system, c.code) in categories for c in codings(report.category))


def _from_report(report: Any) -> _Record | None:
    if report.status not in _REPORT_USABLE or not _is_radiology(report):
        return None
    report_codings = codings(report.code)
    coded = _procedure_codes(report_codings)
    regions, matched = set(coded.regions), list(coded.matched)
    titled = [c for c in report_codings if (c.system, c.code) in _report_titles()]
    if not regions and titled:  # "MRI Spine Report": the region is in the report's name
        regions, site_matches = _site_regions([], texts(report.code))
        matched = [describe_code(c.system, c.code, c.display) for c in titled] + site_matches
    if not regions:
        return None
    found = SpinalMri(evidence(report, _summary(regions, matched)), frozenset(regions), coded.contrast)
    return _Record(found, _keys(report, _references(report.imagingStudy)))


def _from_procedure(procedure: Any) -> _Record | None:
    if procedure.status not in _PROCEDURE_USABLE:
        return None
    coded = _procedure_codes(codings(procedure.code))
    regions, matched = set(coded.regions), list(coded.matched)
    if coded.is_mr and not regions:  # the generic MRI code: the body site says where
        regions, site_matches = _site_regions(codings(procedure.bodySite), texts(procedure.bodySite))
        matched += site_matches
    if not regions:
        return None
    found = SpinalMri(evidence(procedure, _summary(regions, matched)), frozenset(regions), coded.contrast)
    return _Record(found, _keys(procedure, _references(procedure.report)))


def _same_study(a: _Record, b: _Record) -> bool:
    if a.keys & b.keys:
        return True
    da, db = a.study.evidence.date, b.study.evidence.date
    return da is not None and da == db


def _merge(group: list[_Record]) -> SpinalMri:
    ordered = sorted(group, key=lambda r: _PREFERENCE.get(r.study.evidence.resource_type, 9))
    shown = ordered[0].study
    dated = [(r.study.evidence.date, r.study.evidence) for r in group if r.study.evidence.date is not None]
    earliest: Evidence | None = min(dated, key=lambda pair: pair[0])[1] if dated else None
    regions = frozenset().union(*(r.study.regions for r in group))
    contrast = max((r.study.contrast for r in group), key=lambda c: _CONTRAST_RANK[c])
    matched = " + ".join(dict.fromkeys(r.study.evidence.matched for r in ordered))
    shown_evidence = replace(shown.evidence, matched=matched)
    if earliest is not None:
        shown_evidence = replace(shown_evidence, date=earliest.date, date_label=earliest.date_label)
    return SpinalMri(shown_evidence, regions, contrast, tuple(r.study.evidence for r in ordered[1:]))


def one_per_study(records: list[_Record]) -> list[SpinalMri]:
    """Group the records of one study (linked directly or through others) and merge each group."""
    groups: list[list[_Record]] = []
    for record in records:
        joined = [g for g in groups if any(_same_study(record, other) for other in g)]
        merged = [r for g in joined for r in g] + [record]
        groups = [g for g in groups if not any(g is j for j in joined)] + [merged]
    return [_merge(g) if len(g) > 1 else g[0].study for g in groups]


def spinal_mri_studies(
    imaging_studies: Iterable[Any], reports: Iterable[Any] = (), procedures: Iterable[Any] = ()
) -> list[SpinalMri]:
    """Every prior spinal MRI, each study once."""
    records = [r for r in map(_from_imaging_study, imaging_studies) if r is not None]
    records += [r for r in map(_from_report, reports) if r is not None]
    records += [r for r in map(_from_procedure, procedures) if r is not None]
    return one_per_study(records)
