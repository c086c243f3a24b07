"""Medication recognition from the published value set expansions (RULES.md 1), every trap of
../shared/clinical/valuesets/SOURCES.md 6 handled, and the hand-kept ingredient codes and names kept
as the fall-back. The products issue 14 names (meperidine 50 MG 861467, Vicodin 5/500 856907,
remifentanil) are recognised.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from typing import Any

import pytest

from cds_service.clinical import valuesets
from cds_service.clinical.drug_value_sets import (
    NSAID,
    OPIOID,
    ValueSetMismatch,
    published_products,
    published_value_set,
)
from cds_service.clinical.medications import analgesic_classes
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.decode import typed_resource
from cds_service.fhir.parse import parse_resource
from tests.conftest import NOW, SHARED

RXNORM = valuesets.RXNORM
PUBLISHED = resources.files("cds_service.clinical").joinpath("valuesets", "published")
SHARED_SETS = SHARED / "clinical" / "valuesets"
FILES = (
    "opioid-analgesics-ambulatory-misuse-cdc.json",
    "opioids-all-vsac.json",
    "schedule-ii-iii-iv-opioids-vsac.json",
    "opioids-cds4cpm.json",
    "non-opioid-pain-medications-vsac.json",
)


def classes_of(code: str) -> frozenset[str]:
    product = published_products().get((RXNORM, code))
    return product.classes if product else frozenset()


def members(file: str) -> dict[str, str]:
    doc = json.loads((SHARED_SETS / file).read_text())
    return {c["code"]: c["display"] for c in doc["expansion"]["contains"]}


# --- provenance -------------------------------------------------------------------------------------


@pytest.mark.parametrize("file", FILES)
def test_each_copy_is_byte_exact_with_the_checksum_sources_md_gives(file: str) -> None:
    digest = hashlib.sha256(PUBLISHED.joinpath(file).read_bytes()).hexdigest()
    assert digest == hashlib.sha256((SHARED_SETS / file).read_bytes()).hexdigest()
    assert f"{file}" in (SHARED_SETS / "SOURCES.md").read_text().split(digest)[0].rsplit("\n", 1)[-1]
    assert f"{digest}  {file}" in PUBLISHED.joinpath("PROVENANCE.md").read_text()


def test_sets_are_identified_by_their_oid_id_not_their_url() -> None:
    """cds4cpm's copy of the VSAC non-opioid set carries the cds4cpm url: the id is the OID."""
    doc = json.loads(PUBLISHED.joinpath("non-opioid-pain-medications-vsac.json").read_text())
    assert doc["id"] == "2.16.840.1.113762.1.4.1021.73"
    assert doc["url"] != "http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113762.1.4.1021.73"
    assert len(published_value_set("non-opioid-pain-medications-vsac.json", "2.16.840.1.113762.1.4.1021.73")) == 2178
    with pytest.raises(ValueSetMismatch):
        published_value_set("non-opioid-pain-medications-vsac.json", doc["url"])
    with pytest.raises(ValueSetMismatch):
        published_value_set("opioids-cds4cpm.json", "2.16.840.1.113762.1.4.1196.226")


# --- trap 1: the "non opioid" set holds opioid products ----------------------------------------------------


def test_opioid_products_of_the_non_opioid_set_are_never_nsaids() -> None:
    non_opioid = members("non-opioid-pain-medications-vsac.json")
    opioid_sets = {code for f in FILES[:4] for code in members(f)}
    overlap = set(non_opioid) & opioid_sets
    assert len(overlap) == 30  # SOURCES.md 6.1
    for code in overlap:
        assert NSAID not in classes_of(code) or re.search(r"ibuprofen|aspirin|naproxen", non_opioid[code], re.I)
    for code in ("2179635", "1148478", "2001358", "2118728", "2118732", "312288"):
        assert code in non_opioid and classes_of(code) == {OPIOID}, (code, non_opioid[code])


def test_every_nsaid_product_names_an_nsaid_ingredient_and_no_opioid_unless_it_is_also_an_opioid() -> None:
    nsaid_names = valuesets.phrases("drug_value_sets", "nsaidIngredientText")
    opioid_names = valuesets.phrases("drug_value_sets", "opioidIngredientText")
    assert nsaid_names is not None and opioid_names is not None
    nsaids = [p for p in published_products().values() if NSAID in p.classes]
    assert len(nsaids) > 250
    for product in nsaids:
        assert nsaid_names.search(product.display), product
        assert OPIOID in product.classes or not opioid_names.search(product.display), product


# --- trap 2: the non-opioid set is broad -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "1009416",  # lidocaine topical ointment
        "1020420",  # capsaicin / lidocaine / menthol / methyl salicylate lotion
        "1047437",  # baclofen prefilled syringe
        "860107",  # ketorolac ophthalmic solution
        "1043479",  # diclofenac topical cream
        "1101338",  # gabapentin enacarbil
        "243670",  # aspirin 81 MG: antiplatelet
    ],
)
def test_non_nsaid_members_of_the_broad_set_are_not_nsaids(code: str) -> None:
    assert code in members("non-opioid-pain-medications-vsac.json")
    assert classes_of(code) == frozenset()


@pytest.mark.parametrize("code", ["310965", "849574", "834022", "198014"])
def test_systemic_nsaid_products_are_nsaids(code: str) -> None:
    assert classes_of(code) == {NSAID}


# --- trap 3: cds4cpm is every opioid-containing product -----------------------------------------------------


def test_cds4cpm_adds_historical_codes_but_no_cough_cold_or_opioid_use_disorder_product() -> None:
    cds4cpm = members("opioids-cds4cpm.json")
    current = {code for f in FILES[:3] for code in members(f)}
    assert "856907" in cds4cpm and "856907" not in current
    assert classes_of("856907") == {OPIOID}
    assert "1012727" in cds4cpm  # carbinoxamine / hydrocodone / pseudoephedrine oral solution
    assert classes_of("1012727") == frozenset()
    assert "1010600" in cds4cpm and classes_of("1010600") == frozenset()  # buprenorphine / naloxone
    cough = re.compile(r"guaifenesin|pseudoephedrine|chlorpheniramine|promethazine|homatropine", re.I)
    coughs = [c for c, d in cds4cpm.items() if cough.search(d)]
    assert len(coughs) > 100 and all(classes_of(c) == frozenset() for c in coughs)


# --- trap 4: stale ICD-10-CM in the published sets: prefix matching stays -------------------------------


def test_icd10_headers_of_the_published_sets_do_not_limit_matching() -> None:
    movement = members("../valuesets/neurologic-movement-and-related-disorders-vsac.json")
    assert "G35" in movement and "G35.A" not in movement
    chronic = members("../valuesets/conditions-associated-with-chronic-pain-vsac.json")
    assert "M54.5" in chronic and "M54.50" not in chronic
    ms = valuesets.concepts("multiple_sclerosis")["multiple_sclerosis"]
    back = valuesets.concepts("back_pain")["back_pain"]
    assert all(ms.match_code(valuesets.ICD10CM, c) for c in ("G35", "G35.A", "G35.D"))
    assert all(back.match_code(valuesets.ICD10CM, c) for c in ("M54.5", "M54.50", "M54.51", "M54.59"))


# --- through the rule reader: the products of issue 14, and the fall-backs ----------------------------------


def request(concept: dict[str, Any], rid: str = "m1") -> Any:
    raw = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept,
        "authoredOn": "2026-10-01",
    }
    model = parse_resource(raw).resource
    assert model is not None
    return model


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("861467", {OPIOID}),  # meperidine hydrochloride 50 MG Oral Tablet
        ("856907", {OPIOID}),  # Vicodin 5/500: only in cds4cpm
        ("1729578", {OPIOID}),  # remifentanil 1 MG Injection
        ("1729581", {OPIOID}),  # remifentanil 1 MG Injection [Ultiva]: cds4cpm
        ("1729712", {OPIOID}),
        ("1049589", {OPIOID, NSAID}),  # ibuprofen / oxycodone
        ("310965", {NSAID}),
        ("5640", {NSAID}),  # ibuprofen ingredient code: the fall-back
        ("198440", set()),  # acetaminophen 500 MG (a blog cited in TERMINOLOGY.md 5 called it ibuprofen)
        ("1247385", {NSAID}),  # hand-kept ibuprofen SBD that no published set holds
        ("153010", {NSAID}),  # Advil brand name code (hand-kept)
        ("243670", set()),
        ("1010600", set()),
    ],
)
def test_products_recognised_by_code_alone(code: str, expected: set[str]) -> None:
    assert set(analgesic_classes(request({"coding": [{"system": RXNORM, "code": code}]}), {})) == expected


def test_names_stay_the_fall_back_for_text_only_and_locally_coded_drugs() -> None:
    local = {
        "coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288", "code": "44"}],
        "text": "Demerol 50 mg",
    }
    assert set(analgesic_classes(request({"text": "Aleve 220 mg tablet"}), {})) == {NSAID}
    assert set(analgesic_classes(request({"text": "meperidine 50 mg tab"}), {})) == set()  # not a hand-kept name
    assert set(analgesic_classes(request(local), {})) == set()
    assert set(analgesic_classes(request({"text": "oxycodone 5 mg"}), {})) == {OPIOID}


def test_the_relevance_filter_keeps_a_medication_coded_only_by_a_published_product() -> None:
    relevance = RelevanceFilter.from_value_sets()
    for code in ("861467", "856907", "1729578"):
        raw = {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
        }
        typed = typed_resource(raw)
        assert typed is not None and relevance.keep(typed, NOW.date(), 90), code


def test_hand_kept_products_agree_with_the_published_sets() -> None:
    """Where a published set holds a hand-kept product code, its name there has the same ingredients."""
    held: dict[str, str] = {}
    for file in FILES:
        held.update(members(file))
    for product in valuesets.load("analgesics")["products"]:
        if product["code"] in held:
            for ingredient in product["ingredients"]:
                assert ingredient in held[product["code"]].lower(), (product, held[product["code"]])
    (removed,) = valuesets.load("analgesics")["removedProducts"]
    assert held[removed["code"]] == "acetaminophen 500 MG Oral Tablet"
