"""The clinical layer on records shaped the way Epic and Oracle Health write them (issue 14):

* a prior spinal MRI present only as a radiology DiagnosticReport or a Procedure (RULES.md 1), one
  study seen several ways counted once;
* the reason for the visit being charted (Encounter of context.encounterId) as back-pain evidence;
* the two corrected rules: an NSAID counts as a trial only when started for this back pain, and
  "paroxysmal" only where it qualifies a spasm, pain or sensory symptom.

Resources are validated by `fhir.resources` (parse.py) as the service reads them; "now" is fixed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cds_service.clinical import facts as f
from cds_service.clinical.decision import Level, decide
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.decode import typed_resource
from cds_service.fhir.parse import parse_resource

NOW = dt.date(2026, 11, 25)
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
SUBJECT = {"reference": "Patient/p1"}
RADIOLOGY = {"coding": [{"system": LOINC, "code": "LP29684-5", "display": "Radiology"}]}


def day(days_ago: int) -> str:
    return (NOW - dt.timedelta(days=days_ago)).isoformat()


def cc(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict[str, Any] = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def condition(rid: str, code: dict[str, Any], onset: int | None = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "subject": SUBJECT,
        "code": code,
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        **extra,
    }
    if onset is not None:
        raw["onsetDateTime"] = day(onset)
    return raw


MS = condition("ms", cc(SCT, "24700007", "Multiple sclerosis"), onset=3000)
BACK_PAIN = condition("lbp", cc(SCT, "279039007", "Low back pain"), onset=30)


def report(
    rid: str, code: dict[str, Any], status: str = "final", days: int | None = 20, **extra: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "category": [RADIOLOGY],
        "code": code,
        "subject": SUBJECT,
        **extra,
    }
    if days is not None:
        raw["effectiveDateTime"] = day(days)
    return raw


def procedure(
    rid: str, code: dict[str, Any], status: str = "completed", days: int = 20, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": status,
        "code": code,
        "subject": SUBJECT,
        "performedDateTime": day(days),
        **extra,
    }


def imaging_study(rid: str, site: str, days: int = 20, **extra: Any) -> dict[str, Any]:
    mr = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}
    return {
        "resourceType": "ImagingStudy",
        "id": rid,
        "status": "available",
        "subject": SUBJECT,
        "started": day(days),
        "modality": [mr],
        "series": [
            {"uid": f"2.25.{abs(hash(rid)) % 10**8}", "modality": mr, "bodySite": {"system": SCT, "code": site}}
        ],
        **extra,
    }


CERVICAL_MRI = cc(LOINC, "24937-5", "MR Cervical spine WO and W contrast IV")
THORACIC_MRI = cc(LOINC, "24981-3", "MR Thoracic spine WO and W contrast IV")
LUMBAR_MRI = cc(LOINC, "30679-5", "MR Lumbar spine WO contrast")


def models(*raws: dict[str, Any]) -> list[Any]:
    out = []
    for raw in raws:
        model = parse_resource(raw).resource
        assert model is not None, raw
        out.append(model)
    return out


def facts_of(*raws: dict[str, Any], encounter_id: str | None = None) -> f.ClinicalFacts:
    return extract_facts(models(*raws), NOW, encounter_id=encounter_id)


# --- prior spinal MRI as a radiology report --------------------------------------------------------


def test_an_mri_present_only_as_radiology_reports_is_recognised_and_no_mri_is_suggested() -> None:
    facts = facts_of(MS, BACK_PAIN, report("c", CERVICAL_MRI), report("t", THORACIC_MRI, days=21))
    assert {s.evidence.reference for s in facts.spinal_mri} == {"DiagnosticReport/c", "DiagnosticReport/t"}
    cervical = next(s for s in facts.spinal_mri if s.evidence.resource_id == "c")
    assert cervical.regions == {"cervical"} and cervical.contrast == "without-and-with"
    assert (cervical.evidence.where, cervical.evidence.date_label) == (f.RADIOLOGY_REPORT, f.PERFORMED)
    # Cervical and thoracic MRIs on different days are two studies, neither covering the cord.
    decision = decide(facts)
    assert decision.level is Level.BASELINE and decision.mri is not None and decision.mri.suggest


def test_a_whole_spine_report_covers_the_cord() -> None:
    whole = cc(LOINC, "36400-0", "MR Spine WO and W contrast IV")
    decision = decide(facts_of(MS, BACK_PAIN, report("spine", whole)))
    assert decision.mri is not None and not decision.mri.suggest
    assert decision.mri.recent_study is not None
    assert decision.mri.recent_study.evidence.reference == "DiagnosticReport/spine"


@pytest.mark.parametrize(
    "status", ["registered", "partial", "preliminary", "final", "amended", "corrected", "appended"]
)
def test_usable_report_statuses(status: str) -> None:
    assert len(facts_of(report("r", CERVICAL_MRI, status=status)).spinal_mri) == 1


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error", "unknown"])
def test_unusable_report_statuses(status: str) -> None:
    assert facts_of(report("r", CERVICAL_MRI, status=status)).spinal_mri == ()


@pytest.mark.parametrize(
    ("category", "counts"),
    [
        (RADIOLOGY, True),
        (cc(V2_0074, "RAD"), True),
        (cc(V2_0074, "NMR"), True),
        (cc(V2_0074, "MR"), True),
        (cc(V2_0074, "LAB"), False),
        (cc(LOINC, "LP7839-6", "Pathology"), False),
        (cc(LOINC, "LP29684-5-x"), False),
    ],
)
def test_only_radiology_reports_count(category: dict[str, Any], counts: bool) -> None:
    raw = report("r", CERVICAL_MRI)
    raw["category"] = [category]
    assert bool(facts_of(raw).spinal_mri) is counts
    del raw["category"]
    assert facts_of(raw).spinal_mri == ()


def test_report_date_is_effective_else_issued() -> None:
    issued_only = report("r", CERVICAL_MRI, days=None, issued=f"{day(12)}T10:00:00Z")
    (study,) = facts_of(issued_only).spinal_mri
    assert (study.evidence.date, study.evidence.date_label) == (NOW - dt.timedelta(days=12), f.REPORTED)
    period = report("p", CERVICAL_MRI, days=None, effectivePeriod={"start": day(15)}, issued=f"{day(12)}T10:00:00Z")
    (study,) = facts_of(period).spinal_mri
    assert (study.evidence.date, study.evidence.date_label) == (NOW - dt.timedelta(days=15), f.PERFORMED)


def test_an_mri_spine_report_title_needs_the_region_in_its_name() -> None:
    named = report("named", cc(LOINC, "18756-7", "MRI Spine Report", text="MRI cervical spine"))
    (study,) = facts_of(named).spinal_mri
    assert study.regions == {"cervical"}
    assert facts_of(report("unnamed", cc(LOINC, "18756-7", "MRI Spine Report"))).spinal_mri == ()


def test_a_report_with_a_code_that_is_no_spinal_mri_is_not_one() -> None:
    brain = cc(SCT, "816077007", "MRI of brain")
    assert facts_of(report("brain", brain), report("any", cc(LOINC, "25056-3", "MRI Report"))).spinal_mri == ()


# --- prior spinal MRI as a procedure ----------------------------------------------------------------


def test_an_mri_present_only_as_a_procedure_is_recognised() -> None:
    whole = cc(SCT, "241645008", "Magnetic resonance imaging of spine (procedure)")
    done = procedure("pr", whole)
    del done["performedDateTime"]
    done["performedPeriod"] = {"start": day(9)}
    facts = facts_of(MS, BACK_PAIN, done)
    (study,) = facts.spinal_mri
    assert study.covers_cord and study.evidence.where == f.PROCEDURE_RECORD
    assert (study.evidence.date, study.evidence.date_label) == (NOW - dt.timedelta(days=9), f.PERFORMED)
    assert decide(facts).mri is not None and not decide(facts).mri.suggest  # type: ignore[union-attr]


def test_cpt_procedures_record_region_and_contrast() -> None:
    facts = facts_of(procedure("c", cc(CPT, "72156")), procedure("l", cc(CPT, "72148"), days=40))
    by_id = {s.evidence.resource_id: s for s in facts.spinal_mri}
    assert (by_id["c"].regions, by_id["c"].contrast) == ({"cervical"}, "without-and-with")
    assert (by_id["l"].regions, by_id["l"].contrast) == ({"lumbar"}, "without")


@pytest.mark.parametrize(
    ("status", "counts"),
    [
        ("completed", True),
        ("in-progress", True),
        ("not-done", False),
        ("stopped", False),
        ("entered-in-error", False),
        ("preparation", False),
    ],
)
def test_procedure_statuses(status: str, counts: bool) -> None:
    assert bool(facts_of(procedure("p", cc(CPT, "72156"), status=status)).spinal_mri) is counts


def test_the_generic_mri_procedure_needs_a_spinal_body_site() -> None:
    generic = cc(SCT, "113091000", "Magnetic resonance imaging")
    at_neck = procedure("g1", generic, bodySite=[cc(SCT, "122494005", "Cervical spine structure")])
    (study,) = facts_of(at_neck).spinal_mri
    assert study.regions == {"cervical"}
    assert facts_of(procedure("g2", generic)).spinal_mri == ()


# --- one study seen several ways is one study ---------------------------------------------------------


def test_imaging_study_report_and_procedure_of_one_study_count_once() -> None:
    whole = cc(LOINC, "36400-0", "MR Spine WO and W contrast IV")
    study = imaging_study("is", "421060004", days=21)
    rep = report("dr", whole, days=None, issued=f"{day(19)}T08:00:00Z", imagingStudy=[{"reference": "ImagingStudy/is"}])
    proc = procedure("pr", cc(SCT, "241645008"), days=21, report=[{"reference": "DiagnosticReport/dr"}])
    (one,) = facts_of(study, rep, proc).spinal_mri
    assert one.evidence.reference == "DiagnosticReport/dr"  # shown as its report
    assert one.evidence.where == f.RADIOLOGY_REPORT
    assert (one.evidence.date, one.evidence.date_label) == (NOW - dt.timedelta(days=21), f.PERFORMED)  # when done
    assert {e.reference for e in one.also_seen_as} == {"ImagingStudy/is", "Procedure/pr"}
    assert one.regions == {"cervical", "thoracic", "lumbar"} and one.contrast == "without-and-with"


def test_records_of_one_order_or_one_accession_number_are_one_study() -> None:
    order = [{"reference": "ServiceRequest/order-1"}]
    by_order = facts_of(
        report("dr", CERVICAL_MRI, days=3, basedOn=order), procedure("pr", cc(CPT, "72156"), basedOn=order)
    )
    assert len(by_order.spinal_mri) == 1
    accession = [{"system": "urn:oid:1.2.3.4", "value": "ACC-77"}]
    by_id = facts_of(
        report("dr", CERVICAL_MRI, days=3, identifier=accession), imaging_study("is", "122494005", identifier=accession)
    )
    assert len(by_id.spinal_mri) == 1


def test_a_shared_care_plan_is_no_link() -> None:
    plan = [{"reference": "CarePlan/ms-monitoring"}]
    facts = facts_of(report("dr", CERVICAL_MRI, days=3, basedOn=plan), procedure("pr", cc(CPT, "72156"), basedOn=plan))
    assert len(facts.spinal_mri) == 2


def test_unlinked_records_are_one_study_only_when_done_the_same_day() -> None:
    same = facts_of(report("dr", CERVICAL_MRI, days=20), procedure("pr", cc(CPT, "72156"), days=20))
    assert len(same.spinal_mri) == 1
    other_day = facts_of(report("dr", CERVICAL_MRI, days=20), procedure("pr", cc(CPT, "72156"), days=50))
    assert len(other_day.spinal_mri) == 2


def test_one_session_reported_per_region_covers_the_cord() -> None:
    """Epic files "MR cervical spine" and "MR thoracic spine" of one session as two reports."""
    facts = facts_of(MS, BACK_PAIN, report("c", CERVICAL_MRI, days=20), report("t", THORACIC_MRI, days=20))
    (session,) = facts.spinal_mri
    assert session.covers_cord and [e.reference for e in session.also_seen_as] == ["DiagnosticReport/t"]
    decision = decide(facts)
    assert decision.mri is not None and not decision.mri.suggest


def test_a_chain_of_links_joins_every_record() -> None:
    """ImagingStudy <- report, report <- procedure: the three are one even though IS and procedure
    share nothing directly (and are dated differently)."""
    study = imaging_study("is", "122494005", days=30)
    rep = report("dr", CERVICAL_MRI, days=29, imagingStudy=[{"reference": "ImagingStudy/is"}])
    proc = procedure("pr", cc(CPT, "72156"), days=31, report=[{"reference": "DiagnosticReport/dr"}])
    (one,) = facts_of(proc, study, rep).spinal_mri
    assert one.evidence.date == NOW - dt.timedelta(days=31)


# --- the visit's reason ---------------------------------------------------------------------------


def encounter(rid: str = "enc-1", status: str = "in-progress", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": rid,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": SUBJECT,
        "period": {"start": f"{NOW.isoformat()}T09:00:00Z"},
        **extra,
    }


VISIT_BACK_PAIN = encounter(reasonCode=[cc(SCT, "279039007", "Low back pain")])


def test_the_visit_reason_is_back_pain_evidence() -> None:
    facts = facts_of(MS, VISIT_BACK_PAIN, encounter_id="enc-1")
    (back,) = facts.back_pain
    assert back.evidence.reference == "Encounter/enc-1"
    assert (back.evidence.where, back.evidence.date, back.evidence.date_label) == (f.VISIT_REASON, NOW, f.RECORDED)
    assert decide(facts).level is Level.BASELINE


def test_only_the_visit_being_charted_counts() -> None:
    assert facts_of(MS, VISIT_BACK_PAIN).back_pain == ()
    assert facts_of(MS, VISIT_BACK_PAIN, encounter_id="other").back_pain == ()
    for status in ("cancelled", "entered-in-error"):
        held_not = encounter(status=status, reasonCode=[cc(SCT, "279039007")])
        assert facts_of(MS, held_not, encounter_id="enc-1").back_pain == ()


def test_a_visit_reason_by_text_and_a_denied_one() -> None:
    said = encounter(reasonCode=[{"text": "Lower back pain for 2 weeks"}])
    assert len(facts_of(MS, said, encounter_id="enc-1").back_pain) == 1
    denied = encounter(reasonCode=[{"text": "MS follow-up, denies back pain"}])
    assert facts_of(MS, denied, encounter_id="enc-1").back_pain == ()


def test_a_visit_reason_referencing_a_back_pain_condition_counts_even_if_old() -> None:
    old = condition("old-lbp", cc(SCT, "279039007", "Low back pain"), onset=2000)
    old["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")
    visit = encounter(reasonReference=[{"reference": "Condition/old-lbp"}])
    assert facts_of(MS, old).back_pain == ()
    (back,) = facts_of(MS, old, visit, encounter_id="enc-1").back_pain
    assert back.evidence.reference == "Condition/old-lbp" and back.evidence.where == f.VISIT_REASON
    old["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted")
    assert facts_of(MS, old, visit, encounter_id="enc-1").back_pain == ()


def test_the_visit_reason_text_can_show_a_mechanical_pattern_or_no_relief() -> None:
    visit = encounter(reasonCode=[{"text": "low back pain, worse with lifting, no relief with ibuprofen"}])
    facts = facts_of(MS, visit, encounter_id="enc-1")
    assert [m.evidence.reference for m in facts.mechanical_pattern] == ["Encounter/enc-1"]
    assert [p.concept for p in facts.poor_analgesic_response] == ["no_relief"]


# --- the typed reader and the relevance pre-filter let the new records through ---------------------------


def _kept(raw: dict[str, Any]) -> Any:
    """The record as the typed reader reads it, when the relevance pre-filter keeps it; else None."""
    typed = typed_resource(raw)
    assert typed is not None, raw
    return typed if RelevanceFilter.from_value_sets().keep(typed, NOW, 90) else None


def test_relevance_filter_keeps_spinal_mri_reports_procedures_and_encounters() -> None:
    lab = report("cbc", cc(LOINC, "58410-2", "CBC panel"))
    lab["category"] = [cc(V2_0074, "LAB")]
    appendectomy = procedure("app", cc(SCT, "80146002", "Appendectomy"))
    kept_report = _kept(report("dr", CERVICAL_MRI, presentedForm=[{"data": "QUJD"}]))
    assert kept_report is not None and not hasattr(kept_report, "presentedForm")  # undeclared: never read
    assert _kept(procedure("pr", cc(CPT, "72156"))) is not None
    assert _kept(VISIT_BACK_PAIN) is not None
    assert _kept(lab) is None
    assert _kept(appendectomy) is None


def test_relevance_filter_changes_no_fact_on_these_records() -> None:
    raws = [
        MS,
        imaging_study(
            "is",
            "122494005",
            identifier=[{"system": "urn:x", "value": "1"}],
            basedOn=[{"reference": "ServiceRequest/o"}],
        ),
        report("dr", CERVICAL_MRI, imagingStudy=[{"reference": "ImagingStudy/is"}], conclusion="normal"),
        procedure("pr", cc(CPT, "72157"), report=[{"reference": "DiagnosticReport/dr"}], note=[{"text": "x"}]),
        VISIT_BACK_PAIN,
    ]
    typed = [kept for raw in raws if (kept := _kept(raw)) is not None]
    assert len(typed) == len(raws)
    assert extract_facts(typed, NOW, encounter_id="enc-1") == extract_facts(models(*raws), NOW, encounter_id="enc-1")


# --- NSAID trial: only one started for this back pain -------------------------------------------------


def ibuprofen(rid: str, started: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": cc(RXNORM, "310965", "Ibuprofen 200 MG Oral Tablet"),
        "authoredOn": day(started),
    }


@pytest.mark.parametrize(
    ("started", "counts"),
    [
        (3000, False),  # years before the back pain (onset 30 days ago): for something else
        (38, False),  # 8 days before the onset
        (37, True),  # 7 days before the onset: for this back pain
        (30, True),  # on the onset day
        (14, True),  # 14 days ago: a full trial
        (13, False),  # too short a trial yet
    ],
)
def test_an_nsaid_trial_is_one_started_for_this_back_pain(started: int, counts: bool) -> None:
    facts = facts_of(MS, BACK_PAIN, ibuprofen("ibu", started))
    assert bool(facts.poor_analgesic_response) is counts
    assert decide(facts).level is (Level.CORD_FEATURES if counts else Level.BASELINE)


def test_the_back_pain_onset_is_its_earliest_evidence() -> None:
    """A chronic back pain since long ago and a new complaint: an NSAID started in between is a trial."""
    chronic = condition("chronic", cc(SCT, "134407002", "Chronic back pain"), onset=400)
    assert facts_of(MS, BACK_PAIN, chronic, ibuprofen("ibu", 200)).poor_analgesic_response != ()


def test_no_trial_when_the_onset_is_unknown() -> None:
    undated = condition("lbp", cc(SCT, "279039007", "Low back pain"))
    assert facts_of(MS, undated, ibuprofen("ibu", 20)).poor_analgesic_response == ()


# --- "paroxysmal" only for a spasm, pain or sensory symptom -----------------------------------------


def symptom(rid: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": cc(SCT, "418799008", "Finding reported by subject or history provider", text="Symptom"),
        "subject": SUBJECT,
        "effectiveDateTime": day(5),
        "valueCodeableConcept": {"text": value},
    }


@pytest.mark.parametrize(
    ("value", "concept"),
    [
        ("Paroxysmal dyspnea (finding)", None),
        ("Paroxysmal nocturnal dyspnea", None),
        ("Paroxysmal atrial fibrillation", None),
        ("Paroxysmal supraventricular tachycardia", None),
        ("Paroxysmal spasms of the legs", "spasm"),
        ("paroxysmal tonic spasm", "spasm"),
        ("Paroxysmal pain in the back", "paroxysmal_symptom"),
        ("paroxysmal itching of the trunk", "paroxysmal_symptom"),
        ("no paroxysmal spasms", None),
    ],
)
def test_paroxysmal_only_qualifying_spasm_pain_or_sensory_symptoms(value: str, concept: str | None) -> None:
    facts = facts_of(MS, BACK_PAIN, symptom("s", value))
    assert [c.concept for c in facts.cord_features] == ([concept] if concept else [])
    assert decide(facts).level is (Level.CORD_FEATURES if concept else Level.BASELINE)


def test_paroxysmal_atrial_fibrillation_condition_is_no_cord_feature() -> None:
    afib = condition("af", {"text": "Paroxysmal atrial fibrillation"}, onset=100)
    assert facts_of(MS, BACK_PAIN, afib).cord_features == ()
