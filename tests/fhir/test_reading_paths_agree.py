"""The same facts whichever reader reads the record.

Every fixture request, every EHR-variant case and real-shaped records (Synthea charts with MS, back
pain and a red flag added: bench/real_shaped.py) are read twice: as the service reads them (the
request body decoded by protocol/body.py, the prefetch by the typed decoder, fhir/decode.py, with
`fhir.resources` only for what it declines) and by `fhir.resources` alone, every resource validated
whole (parse.py). The facts the rules find must be equal; and equal again when the relevance
pre-filter runs first.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from cds_service.clinical.extract import extract_facts
from cds_service.clinical.facts import ClinicalFacts
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.parse import parse_resource
from cds_service.fhir.prefetch import read_prefetch
from cds_service.fhir.schema import Resource
from cds_service.protocol.body import parse_json_object
from cds_service.services.patient_data import WANTED_TYPES, prefetch_templates
from tests.clinical import test_ehr_variants
from tests.conftest import NOW, SHARED

ROOT = Path(__file__).resolve().parents[2]
KEYS = tuple(prefetch_templates())


def _real_shaped() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_shaped", ROOT / "bench" / "real_shaped.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixture_requests() -> dict[str, dict[str, Any]]:
    return {
        f"{folder}/{p.stem}": json.loads(p.read_text())
        for folder in ("patient-view", "order-entry")
        for p in sorted((ROOT / "fixtures" / folder).glob("*.json"))
        if p.name != "expected.json"
    }


def _variant_requests() -> dict[str, dict[str, Any]]:
    out = {}
    for group in ("MS_CODED", "NOT_MS", "BACK_PAIN", "LEVELS", "MRI"):
        for case in getattr(test_ehr_variants, group):
            out[f"variant/{case.id}"] = test_ehr_variants.request(case.values[0])
    return out


def _by_reference_reader(request: dict[str, Any]) -> list[Any]:
    """Every wanted resource of this patient, each validated whole by fhir.resources (parse.py)."""
    pid = request["context"]["patientId"]
    out = []
    for key in KEYS:
        value = (request.get("prefetch") or {}).get(key)
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            if any(link.get("relation") == "next" for link in value.get("link") or []):
                continue
            raws = [e.get("resource") for e in value.get("entry") or [] if isinstance(e, dict)]
        else:
            raws = [value]
        for raw in raws:
            if not isinstance(raw, dict) or raw.get("resourceType") not in WANTED_TYPES:
                continue
            subject = (raw.get("subject") or {}).get("reference", "")
            if raw.get("resourceType") == "Patient" or (subject.startswith("Patient/") and subject != f"Patient/{pid}"):
                continue
            resource = parse_resource(raw).resource
            if resource is not None:
                out.append(resource)
    return out


def _facts(resources: list[Any]) -> ClinicalFacts:
    return extract_facts(resources, NOW.date())


def _as_the_service_reads(request: dict[str, Any], select: Any = None) -> list[Any]:
    body = parse_json_object(json.dumps(request).encode(), 64, checked_later=frozenset({("prefetch",)}))
    data = read_prefetch(body.get("prefetch"), KEYS, request["context"]["patientId"], WANTED_TYPES, select)
    return [r for r in data.all_resources(KEYS) if r.get_resource_type() != "Patient"]


REQUESTS = {**_fixture_requests(), **_variant_requests()}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_typed_and_reference_readers_find_the_same_facts(name: str) -> None:
    request = REQUESTS[name]
    typed = _as_the_service_reads(request)
    reference = _facts(_by_reference_reader(request))
    assert _facts(typed) == reference
    assert (
        _facts(_as_the_service_reads(request, RelevanceFilter.from_value_sets().selector(NOW.date(), 90))) == reference
    )


def test_the_fixtures_are_read_by_the_typed_decoder() -> None:
    """Nearly every resource takes the typed path (else the comparison above proves little)."""
    resources = [r for request in REQUESTS.values() for r in _as_the_service_reads(request)]
    typed = sum(isinstance(r, Resource) for r in resources)
    assert len(resources) > 250 and typed / len(resources) > 0.95, (typed, len(resources))


@pytest.mark.skipif(not (SHARED / "data" / "synthea-r4").is_dir(), reason="no Synthea records in ../shared")
@pytest.mark.parametrize("size", [100, 1000])
def test_real_shaped_records_give_the_same_facts_both_ways(size: int) -> None:
    request = _real_shaped().build_request(size, NOW.date())
    typed = _as_the_service_reads(request)
    read_typed = sum(isinstance(r, Resource) for r in typed)
    # Nearly all: a dosage holding only undeclared elements (sequence, timing) is left to fhir.resources.
    assert read_typed / len(typed) > 0.9, (
        f"Synthea's shapes are read by the typed decoder: {read_typed} of {len(typed)}"
    )
    facts = _facts(typed)
    assert facts == _facts(_by_reference_reader(request))
    assert facts == _facts(_as_the_service_reads(request, RelevanceFilter.from_value_sets().selector(NOW.date(), 90)))
    assert facts.has_ms and facts.has_back_pain and facts.new_red_flags, "the added MS, back pain and red flag"


def test_dates_read_the_same_both_ways() -> None:
    """Spot check of the one place the two readers hold different Python values (str vs date)."""
    request = _fixture_requests()["patient-view/urgent-new-paraparesis"]
    typed = {f.evidence.reference: f.evidence.date for f in _facts(_as_the_service_reads(request)).new_red_flags}
    assert typed and all(isinstance(d, dt.date) for d in typed.values())


def test_a_declined_resource_goes_to_fhir_resources_alone_and_an_unreadable_one_is_skipped() -> None:
    """One resource that does not fit the declarations costs only itself: the rest stay typed."""

    def condition(rid: str, **extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "id": rid,
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "24700007"}]},
            **extra,
        }

    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": condition("plain")},
            {"resource": condition("numeric-code", code={"coding": [{"system": "http://x", "code": 35}]})},
            {"resource": condition("bad-date", onsetDateTime="2026-02-30")},
            {"resource": condition("unreadable", verificationStatus={"coding": [{"code": ["refuted"]}]})},
            {"resource": {"resourceType": "Basic", "id": "other-type", "code": {"text": "x"}}},
        ],
    }
    body = parse_json_object(json.dumps({"prefetch": {"conditions": bundle}}).encode(), 64, frozenset({("prefetch",)}))
    data = read_prefetch(body["prefetch"], ["conditions"], "p1", WANTED_TYPES)
    read = {r.id: r for r in data.resources["conditions"]}
    assert set(read) == {"plain", "numeric-code", "bad-date"}
    assert isinstance(read["plain"], Resource)
    assert isinstance(read["numeric-code"], Resource) and read["numeric-code"].code.coding[0].code == "35"
    assert isinstance(read["bad-date"], FHIRAbstractModel)  # the date dropped by fhir.resources' repair
    assert sum(data.skipped.values()) >= 1 and "conditions" not in data.unavailable


def test_codes_sent_as_numbers_are_read_typed_and_filtered_like_the_rest() -> None:
    """An EHR that writes every code as a JSON number does not send its whole record to fhir.resources."""
    vital = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "https://ehr.example.org/flowsheet", "code": 8867}], "text": "Pulse"},
        "valueQuantity": {"value": 72},
    }
    finding = {**vital, "code": {"coding": [{"system": "http://snomed.info/sct", "code": 1845001}]}}
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {**vital, "id": f"v{i}"}} for i in range(3)]}
    bundle["entry"].append({"resource": {**finding, "id": "weakness"}})
    body = parse_json_object(
        json.dumps({"prefetch": {"observations": bundle}}).encode(), 64, frozenset({("prefetch",)})
    )
    keep = RelevanceFilter.from_value_sets().selector(NOW.date(), 90)
    (read,) = read_prefetch(body["prefetch"], ["observations"], "p1", WANTED_TYPES, keep).resources["observations"]
    assert isinstance(read, Resource) and read.id == "weakness" and read.code.coding[0].code == "1845001"
