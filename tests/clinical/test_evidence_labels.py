"""Evidence says where it was recorded and what its date is, in clinical words (RULES.md 2: the card
names "problem list", "visit reason", "radiology report" ... and the date, never FHIR ids or codes).

`where` comes from the resource type and, for a Condition, its category; `date_label` from the date
element that was used (onset: "since", recordedDate: "recorded" ...). Both readers (the typed one and
`fhir.resources`) and the relevance pre-filter keep what these need.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cds_service.clinical import facts as f
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.reading import dated, evidence, where_recorded
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.decode import typed_resource
from cds_service.fhir.parse import parse_resource
from cds_service.fhir.prefetch import read_prefetch
from cds_service.services.patient_data import WANTED_TYPES
from tests.conftest import NOW, expected_outcomes, load_fixture

SCT = "http://snomed.info/sct"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
SUBJECT = {"reference": "Patient/p1"}
LBP = {"coding": [{"system": SCT, "code": "279039007", "display": "Low back pain"}]}


def _both(raw: dict[str, Any]) -> list[Any]:
    """The resource read by `fhir.resources` and, when it takes it, by the typed reader."""
    model = parse_resource(raw).resource
    assert model is not None, raw
    typed = typed_resource(raw)
    return [model] + ([typed] if typed is not None else [])


def _condition(category: str | None = None, **dates: str) -> dict[str, Any]:
    raw: dict[str, Any] = {"resourceType": "Condition", "id": "c1", "subject": SUBJECT, "code": LBP, **dates}
    if category is not None:
        raw["category"] = [{"coding": [{"system": CATEGORY, "code": category}]}]
    return raw


@pytest.mark.parametrize(
    ("raw", "where", "label", "date"),
    [
        (_condition("problem-list-item", onsetDateTime="2026-10-01"), f.PROBLEM_LIST, f.SINCE, "2026-10-01"),
        (
            _condition("encounter-diagnosis", recordedDate="2026-11-02"),
            f.ENCOUNTER_DIAGNOSIS,
            f.RECORDED,
            "2026-11-02",
        ),
        (
            _condition("problem-list-item", onsetPeriod={"start": "2025-03-04"}, recordedDate="2026-01-01"),
            f.PROBLEM_LIST,
            f.SINCE,
            "2025-03-04",
        ),
        (_condition(None, recordedDate="2026-11-02"), f.CONDITION_RECORD, f.RECORDED, "2026-11-02"),
        (_condition(None), f.CONDITION_RECORD, "", None),
        (
            {"resourceType": "Observation", "status": "final", "code": LBP, "effectiveDateTime": "2026-11-20"},
            f.OBSERVATION,
            f.OBSERVED,
            "2026-11-20",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": LBP, "issued": "2026-11-21T10:00:00Z"},
            f.OBSERVATION,
            f.REPORTED,
            "2026-11-21",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "subject": SUBJECT,
                "medicationCodeableConcept": {"text": "ibuprofen 400 mg"},
                "authoredOn": "2026-10-01",
            },
            f.MEDICATION_LIST,
            f.ORDERED,
            "2026-10-01",
        ),
        (
            {
                "resourceType": "MedicationStatement",
                "status": "active",
                "subject": SUBJECT,
                "medicationCodeableConcept": {"text": "naproxen"},
                "effectivePeriod": {"start": "2026-09-01"},
            },
            f.MEDICATION_LIST,
            f.STARTED,
            "2026-09-01",
        ),
        (
            {
                "resourceType": "MedicationStatement",
                "status": "active",
                "subject": SUBJECT,
                "medicationCodeableConcept": {"text": "naproxen"},
                "dateAsserted": "2026-09-05",
            },
            f.MEDICATION_LIST,
            f.RECORDED,
            "2026-09-05",
        ),
        (
            {"resourceType": "ImagingStudy", "status": "available", "subject": SUBJECT, "started": "2026-08-01"},
            f.IMAGING_STUDY,
            f.PERFORMED,
            "2026-08-01",
        ),
    ],
)
def test_where_and_date_label(raw: dict[str, Any], where: str, label: str, date: str | None) -> None:
    for resource in _both(raw):
        assert where_recorded(resource) == where
        expected_date = dt.date.fromisoformat(date) if date else None
        assert dated(resource) == (expected_date, label)
        found = evidence(resource, "x")
        assert (found.where, found.date_label, found.date) == (where, label, expected_date)


def test_problem_list_wins_when_a_condition_is_both() -> None:
    raw = _condition("encounter-diagnosis", onsetDateTime="2026-10-01")
    raw["category"].append({"coding": [{"system": CATEGORY, "code": "problem-list-item"}]})
    for resource in _both(raw):
        assert where_recorded(resource) == f.PROBLEM_LIST


def test_the_typed_reader_reads_the_category() -> None:
    typed = typed_resource(_condition("encounter-diagnosis", onsetDateTime="2026-10-01"))
    assert typed is not None and where_recorded(typed) == f.ENCOUNTER_DIAGNOSIS


def test_the_relevance_filter_keeps_the_category() -> None:
    typed = typed_resource(_condition("problem-list-item"))
    assert typed is not None and RelevanceFilter.from_value_sets().keep(typed, NOW.date(), 90)
    assert typed.category[0].coding[0].code == "problem-list-item"


def test_an_explicit_where_wins() -> None:
    (model, *_) = _both(_condition("problem-list-item", onsetDateTime="2026-10-01"))
    assert evidence(model, "x", where=f.VISIT_REASON).where == f.VISIT_REASON


def _all_evidence(facts: f.ClinicalFacts) -> list[f.Evidence]:
    groups = (
        facts.multiple_sclerosis,
        facts.demyelinating_context,
        facts.back_pain,
        facts.new_red_flags,
        facts.chronic_red_flags,
        facts.cord_features,
        facts.poor_analgesic_response,
        facts.mechanical_pattern,
    )
    return [finding.evidence for group in groups for finding in group] + [s.evidence for s in facts.spinal_mri]


def _fixture_facts(name: str) -> f.ClinicalFacts:
    request = load_fixture(name)
    context = request["context"]
    types = WANTED_TYPES | {"DiagnosticReport", "Procedure", "Encounter"}
    data = read_prefetch(request["prefetch"], list(request["prefetch"]), context["patientId"], types)
    return extract_facts(data.all_resources(), NOW.date(), encounter_id=context.get("encounterId"))


@pytest.mark.parametrize("name", sorted(expected_outcomes()))
def test_every_fixture_evidence_is_labelled(name: str) -> None:
    for item in _all_evidence(_fixture_facts(name)):
        assert item.where in {
            f.PROBLEM_LIST,
            f.ENCOUNTER_DIAGNOSIS,
            f.HEALTH_CONCERN,
            f.CONDITION_RECORD,
            f.OBSERVATION,
            f.IMAGING_STUDY,
            f.RADIOLOGY_REPORT,
            f.PROCEDURE_RECORD,
            f.VISIT_REASON,
            f.MEDICATION_LIST,
        }, item
        assert bool(item.date_label) is (item.date is not None), item


def test_the_ehr_fixtures_say_where_in_clinical_words() -> None:
    (visit,) = _fixture_facts("visit-reason-back-pain").back_pain
    assert (visit.evidence.where, visit.evidence.date_label) == (f.VISIT_REASON, f.RECORDED)
    (referenced,) = _fixture_facts("visit-reason-references-old-back-pain").back_pain
    assert (referenced.evidence.where, referenced.evidence.date_label) == (f.VISIT_REASON, f.SINCE)
    (reports,) = _fixture_facts("mri-as-radiology-reports-covers-cord").spinal_mri
    assert (reports.evidence.where, reports.evidence.date_label) == (f.RADIOLOGY_REPORT, f.PERFORMED)
    assert [e.reference for e in reports.also_seen_as] == ["DiagnosticReport/pv34-mri-t-report"]
    (three,) = _fixture_facts("mri-seen-three-ways-counted-once").spinal_mri
    assert [(e.reference, e.where) for e in three.also_seen_as] == [
        ("ImagingStudy/pv36-mri-spine", f.IMAGING_STUDY),
        ("Procedure/pv36-mri-spine-procedure", f.PROCEDURE_RECORD),
    ]
    (procedures,) = _fixture_facts("mri-as-procedures-covers-cord").spinal_mri
    assert procedures.evidence.where == f.PROCEDURE_RECORD
    (nsaid,) = _fixture_facts("cord-features-nsaid-started-for-back-pain").poor_analgesic_response
    assert (nsaid.evidence.where, nsaid.evidence.date_label) == (f.MEDICATION_LIST, f.STARTED)
    (ms,) = _fixture_facts("urgent-new-paraparesis").multiple_sclerosis
    (back,) = _fixture_facts("urgent-new-paraparesis").back_pain
    assert (ms.evidence.where, ms.evidence.date_label) == (f.PROBLEM_LIST, f.SINCE)
    assert back.evidence.where == f.ENCOUNTER_DIAGNOSIS
