"""Real-shaped records (issue 14.6): the 38 Synthea patients of ../shared/data/synthea-r4/, served as
a FHIR server would (synthea_records.py).

* None has MS or back pain: no card for any of them, in the clinical core and over HTTP.
* With MS and back-pain Conditions added: the card RULES.md asks for. Before issue 14, 12 of them got a
  warning because an ibuprofen / naproxen prescription from years before counted as a failed NSAID
  trial; an NSAID started before this back pain began is not a trial of it, so every one is now at
  baseline, while an NSAID started for the back pain still counts.
* The visit's reason and a radiology report of a spinal MRI work on these records too.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import pytest

from cds_service.clinical.decision import Level, decide
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.facts import VISIT_REASON, ClinicalFacts
from cds_service.clinical.medications import NSAID, analgesic_classes
from cds_service.clinical.reading import clinical_date
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.prefetch import read_prefetch
from cds_service.services.patient_data import WANTED_TYPES
from tests.clinical.synthea_records import Record, condition, prefetch, records
from tests.conftest import NOW, SERVICE_URL

TODAY = NOW.date()
ONSET = TODAY - dt.timedelta(days=20)
ALL_TYPES = WANTED_TYPES | {"DiagnosticReport", "Procedure", "Encounter"}
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RECORDS = {r.name: r for r in records()}
# The patients whose years-old NSAID prescription counted as an NSAID trial before issue 14.
OLD_NSAID = frozenset(
    {
        "Alberto_Armstrong_dc9335d0-bbdd-4120-8ae9-baa6604343b6",
        "Brendan_Turcotte_ac3b5d7f-213f-4149-b2da-768a8dbccb4b",
        "Brent_Beer_7dc94cc0-8c2e-4835-9994-cecbe894bcbf",
        "Denny_Bins_bc0fbd67-bfe3-46c8-8ce9-ef20b0705b46",
        "Edward_Gulgowski_43481611-2459-44f5-ab20-4b142dac160f",
        "Elisha_Bradtke_3aea739a-56f4-490a-ba74-7b46ee99e721",
        "Errol_Walker_dcaa38fa-6be7-44c8-a301-aa38fc7c6ec0",
        "Leonardo_Heaney_3a01d46f-5ac8-42f9-8aa9-24dcdefb6e6e",
        "Louis_Maggio_2e275d4b-855a-4eb2-9021-5410aa8acd4f",
        "Pierre_Bosco_85812c4a-7b8e-4754-aaa4-64b3aef16f7e",
        "Tony_Douglas_f6d715f8-94c0-49ad-a46a-4f96dc7a67b4",
        "Yi_Weissnat_0edbf0a2-10d4-4ccd-a522-6aaeb41f2b41",
    }
)


def ms(record: Record) -> dict[str, Any]:
    return condition(record, "added-ms", SNOMED, "24700007", "Multiple sclerosis", "2015-03-01")


def back_pain(record: Record) -> dict[str, Any]:
    return condition(record, "added-lbp", SNOMED, "279039007", "Low back pain", ONSET.isoformat())


@cache
def _relevance() -> RelevanceFilter:
    return RelevanceFilter.from_value_sets()


def facts_for(
    record: Record,
    added: tuple[dict[str, Any], ...] = (),
    encounter: dict[str, Any] | None = None,
    searched: bool = True,
) -> ClinicalFacts:
    """The facts as the service reads them: every key, the relevance pre-filter, the visit in context."""
    data = prefetch(record, list(added), encounter, searched)
    read = read_prefetch(data, list(data), record.patient_id, ALL_TYPES, _relevance().selector(TODAY, 90))
    return extract_facts(read.all_resources(), TODAY, encounter_id=data["encounter"]["id"])


def request_body(record: Record, added: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    data = prefetch(record, list(added))
    return {
        "hook": "patient-view",
        "hookInstance": "5f1c6a4e-3b2d-4c1a-9e8f-7a6b5c4d3e2f",
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {
            "userId": "Practitioner/example-neurologist",
            "patientId": record.patient_id,
            "encounterId": data["encounter"]["id"],
        },
        "prefetch": data,
    }


def test_the_38_records_and_the_old_nsaid_patients_are_there() -> None:
    assert len(RECORDS) == 38
    assert len(OLD_NSAID) == 12 and OLD_NSAID <= set(RECORDS)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_no_card_for_any_synthea_patient(name: str) -> None:
    facts = facts_for(RECORDS[name])
    assert facts.multiple_sclerosis == () and facts.back_pain == ()
    assert decide(facts).level is Level.NONE


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_whatever_is_sent_the_same_decisions(name: str) -> None:
    """Every resource of each type (laboratory results and reports too, as an open server asked without
    category answers): still no card, and still baseline with MS and back pain."""
    record = RECORDS[name]
    assert decide(facts_for(record, searched=False)).level is Level.NONE
    with_ms = facts_for(record, (ms(record), back_pain(record)), searched=False)
    assert decide(with_ms).level is Level.BASELINE and with_ms.poor_analgesic_response == ()


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_with_ms_and_back_pain_the_card_is_baseline(name: str) -> None:
    record = RECORDS[name]
    facts = facts_for(record, (ms(record), back_pain(record)))
    decision = decide(facts)
    assert decision.level is Level.BASELINE
    assert decision.mri is not None and decision.mri.suggest and not decision.mri.recommended
    assert facts.new_red_flags == () and facts.cord_features == () and facts.poor_analgesic_response == ()


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_an_nsaid_from_before_the_back_pain_is_no_trial(name: str) -> None:
    """The 12 patients whose NSAID counted before: it is recognised, and started years before the onset."""
    record = RECORDS[name]
    data = prefetch(record)
    read = read_prefetch(data, ["medications"], record.patient_id, ALL_TYPES)
    nsaids = [r for r in read.all_resources() if analgesic_classes(r, {}).get(NSAID)]
    assert bool(nsaids) is (name in OLD_NSAID)
    for nsaid in nsaids:
        started = clinical_date(nsaid)
        assert started is not None and (ONSET - started).days > 7


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_an_nsaid_started_for_this_back_pain_still_counts(name: str) -> None:
    record = RECORDS[name]
    naproxen = {
        "resourceType": "MedicationRequest",
        "id": "added-naproxen",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "849574"}]},
        "authoredOn": (ONSET - dt.timedelta(days=3)).isoformat(),
    }
    facts = facts_for(record, (ms(record), back_pain(record), naproxen))
    assert [f.evidence.reference for f in facts.poor_analgesic_response] == ["MedicationRequest/added-naproxen"]
    assert decide(facts).level is Level.CORD_FEATURES


@pytest.mark.parametrize("name", sorted(RECORDS)[:8])
def test_the_visit_reason_on_real_records(name: str) -> None:
    record = RECORDS[name]
    visit = dict(record.latest_encounter)
    visit["reasonCode"] = [{"coding": [{"system": SNOMED, "code": "279039007", "display": "Low back pain"}]}]
    facts = facts_for(record, (ms(record),), encounter=visit)
    (evidence,) = [f.evidence for f in facts.back_pain]
    assert (evidence.reference, evidence.where) == (f"Encounter/{visit['id']}", VISIT_REASON)
    assert decide(facts).level is Level.BASELINE
    assert decide(facts_for(record, (ms(record),))).level is Level.NONE  # its real reason is not back pain


@pytest.mark.parametrize("name", sorted(RECORDS)[:8])
def test_a_spinal_mri_report_on_real_records(name: str) -> None:
    record = RECORDS[name]
    report = {
        "resourceType": "DiagnosticReport",
        "id": "added-mri",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "36400-0"}]},
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "effectiveDateTime": (TODAY - dt.timedelta(days=10)).isoformat(),
    }
    facts = facts_for(record, (ms(record), back_pain(record), report))
    decision = decide(facts)
    assert decision.level is Level.BASELINE and decision.mri is not None and not decision.mri.suggest


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_over_http_no_card_then_a_baseline_card(client, name: str) -> None:
    record = RECORDS[name]
    response = client.post(SERVICE_URL, json=request_body(record))
    assert response.status_code == 200 and response.json() == {"cards": []}
    response = client.post(SERVICE_URL, json=request_body(record, (ms(record), back_pain(record))))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert card["indicator"] == "info"
    (suggestion,) = card["suggestions"]
    assert suggestion["isRecommended"] is False
