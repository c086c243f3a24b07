"""Every code the service matches or emits is a verified code from ../shared/clinical.

A wrong code is a patient-safety defect: this test fails if a value set gains a code that the
terminology reference does not mark VERIFIED (two WEAK LOINC codes are allowed because RULES.md names
them explicitly; clinically isolated syndrome is allowed only as a "not MS" marker).
"""

from __future__ import annotations

import json

import pytest

from cds_service.clinical import valuesets
from tests.conftest import SHARED

SOURCES = SHARED / "clinical" / "terminology-sources.json"
ALLOWED_NON_VERIFIED = {
    ("http://loinc.org", "8661-1"),  # chief complaint: named in RULES.md 1
    ("http://loinc.org", "38204-4"),  # pain primary location: named in RULES.md 1
    ("http://snomed.info/sct", "445967004"),  # CIS: recognised only to say "not MS"
}


def _all_codes() -> list[tuple[str, str, str]]:
    out = []
    for name in valuesets.ALL_VALUE_SETS:
        doc = valuesets.load(name)
        for key, concept in doc.get("concepts", {}).items():
            out += [(f"{name}.{key}", c["system"], c["code"]) for c in concept.get("codes", [])]
        out += [(f"{name}.procedures", p["system"], p["code"]) for p in doc.get("procedures", [])]
        out += [(f"{name}.modality", c["system"], c["code"]) for c in doc.get("modality", [])]
        out += [(f"{name}.reportTitles", c["system"], c["code"]) for c in doc.get("reportTitles", [])]
        for region, codes in doc.get("orderable", {}).items():
            out += [(f"{name}.orderable.{region}", c["system"], c["code"]) for c in codes]
    return out


@pytest.fixture(scope="module")
def verified() -> dict[tuple[str, str], str]:
    if not SOURCES.is_file():
        pytest.fail(f"{SOURCES} is missing: the terminology reference must sit beside the repository")
    return {(e["system"], e["code"]): e["status"] for e in json.loads(SOURCES.read_text())}


def test_every_code_is_verified(verified: dict[tuple[str, str], str]) -> None:
    codes = _all_codes()
    assert len(codes) > 200
    bad = [
        (where, system, code, verified.get((system, code), "absent"))
        for where, system, code in codes
        if (system, code) not in ALLOWED_NON_VERIFIED and verified.get((system, code)) != "VERIFIED"
    ]
    assert bad == []


def test_codes_are_strings_and_the_known_traps_are_absent() -> None:
    codes = _all_codes()
    assert all(isinstance(code, str) for _, _, code in codes)
    present = {code for _, _, code in codes}
    # TERMINOLOGY.md 8: codes seen mislabelled in public repos, and unverified ones.
    for trap in (
        "46241-6",
        "89261-2",
        "241570006",
        "241635003",
        "450451004",
        "246578001",
        "1292",
        "57258",
        "21949",
        "37822005",
    ):
        assert trap not in present


def test_icd10_prefix_matching_covers_fy2026_and_other_editions() -> None:
    ms = valuesets.concepts("multiple_sclerosis")["multiple_sclerosis"]
    for system, code in [
        (valuesets.ICD10CM, "G35"),
        (valuesets.ICD10CM, "G35.A"),
        (valuesets.ICD10CM, "G35.B2"),
        (valuesets.ICD10CM, "g35.c1"),
        (valuesets.ICD10CM, "G35D"),
        (valuesets.ICD10, "G35"),
        ("http://fhir.de/CodeSystem/bfarm/icd-10-gm", "G35.10"),
    ]:
        assert ms.match_code(system, code), (system, code)
    assert not ms.match_code(valuesets.ICD10CM, "G37.9")
    assert not ms.match_code(valuesets.SNOMED, "G35")  # a prefix applies to ICD-10 systems only
    back = valuesets.concepts("back_pain")["back_pain"]
    assert back.match_code(valuesets.ICD10CM, "M54.50") and back.match_code(valuesets.ICD10, "M54.5")
    assert not back.match_code(valuesets.ICD10CM, "M54.81")  # occipital neuralgia
    assert not back.match_code(valuesets.ICD10CM, "M54.02")  # panniculitis


def test_rxnorm_products_are_the_ones_terminology_md_cites() -> None:
    """Product codes (SCD / SBD / BN) are not in terminology-sources.json; each must be cited, with
    its source, in TERMINOLOGY.md 5, and map only to NSAID or opioid ingredients we know."""
    section = (SHARED / "clinical" / "TERMINOLOGY.md").read_text().split("## 5. Medications", 1)[1].split("## 6.", 1)[0]
    doc = valuesets.load("analgesics")
    nsaid, opioid = (valuesets.concepts("analgesics")[k].text for k in ("nsaid", "opioid"))
    assert len(doc["products"]) >= 10
    for product in doc["products"]:
        assert product["system"] == valuesets.RXNORM
        assert product["code"] in section, product
        for ingredient in product["ingredients"]:
            assert nsaid.search(ingredient) or opioid.search(ingredient), ingredient


def test_radiology_report_categories_come_from_published_sources() -> None:
    """LOINC LP29684-5 from the published US Core category value set; HL7 v2-0074 RAD and NMR (SOURCES.md 7)
    and "MR", which RULES.md 1 names for v2-0074 (the table itself calls magnetic resonance NMR)."""
    us_core = json.loads((SHARED / "clinical" / "valuesets" / "us-core-diagnosticreport-category.json").read_text())
    radiology = {
        (include["system"], concept["code"])
        for include in us_core["compose"]["include"]
        for concept in include["concept"]
        if concept["display"] == "Radiology"
    }
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0074"
    named = radiology | {(v2, "RAD"), (v2, "NMR"), (v2, "MR")}
    categories = {(c["system"], c["code"]) for c in valuesets.load("spinal_mri")["radiologyReportCategories"]}
    assert categories == named
    assert ("http://loinc.org", "LP29684-5") in categories
    rules = (SHARED / "clinical" / "RULES.md").read_text()
    assert "LP29684-5" in rules and "v2-0074 RAD / MR" in rules
