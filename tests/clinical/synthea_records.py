"""The 38 Synthea patients of ../shared/data/synthea-r4/ as a FHIR server would serve them: each
transaction Bundle's `urn:uuid:` references resolved to `Type/id`, its resources split into the
prefetch keys the way each prefetch search would answer (only the searched Observation categories,
only MR ImagingStudies, only radiology DiagnosticReports), and the latest Encounter as the visit
being charted. Helpers only: the tests are in test_synthea_records.py.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import SHARED

SYNTHEA = SHARED / "data" / "synthea-r4"
OBSERVATION_CATEGORIES = frozenset({"survey", "exam", "vital-signs"})
RADIOLOGY = frozenset({("http://loinc.org", "LP29684-5"), ("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")})
DCM_MR = ("http://dicom.nema.org/resources/ontology/DCM", "MR")
KEY_OF_TYPE = {
    "Condition": "conditions",
    "Observation": "observations",
    "ImagingStudy": "imagingStudies",
    "MedicationRequest": "medications",
    "MedicationStatement": "medicationStatements",
    "DiagnosticReport": "diagnosticReports",
    "Procedure": "procedures",
}


@dataclass(frozen=True)
class Record:
    name: str
    patient_id: str
    resources: tuple[dict[str, Any], ...]  # every resource, references resolved

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["resourceType"] == resource_type]

    @property
    def latest_encounter(self) -> dict[str, Any]:
        return max(self.of_type("Encounter"), key=lambda e: e.get("period", {}).get("start", ""))


def _codes(concepts: Any) -> set[tuple[str, str]]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    return {(c.get("system"), c.get("code")) for cc in concepts or [] for c in cc.get("coding", [])}


def _resolve(node: Any, urls: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (urls.get(v, v) if k == "reference" else _resolve(v, urls)) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, urls) for v in node]
    return node


def _load(path: Path) -> Record:
    bundle = json.loads(path.read_text())
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    resources = tuple(_resolve(e["resource"], urls) for e in bundle["entry"])
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return Record(path.stem, patient_id, resources)


@cache
def records() -> tuple[Record, ...]:
    return tuple(_load(path) for path in sorted(SYNTHEA.glob("*.json")))


def _answers(key: str, resource: dict[str, Any]) -> bool:
    """Does the prefetch search of `key` return this resource (as the service's templates ask)?"""
    rt = resource["resourceType"]
    if rt == "Observation":
        return bool({code for _, code in _codes(resource.get("category"))} & OBSERVATION_CATEGORIES)
    if rt == "ImagingStudy":
        return DCM_MR in {(c.get("system"), c.get("code")) for c in resource.get("modality", [])}
    if rt == "DiagnosticReport":
        return bool(_codes(resource.get("category")) & RADIOLOGY)
    return True


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def prefetch(
    record: Record,
    added: list[dict[str, Any]] = (),
    encounter: dict[str, Any] | None = None,
    searched: bool = True,
) -> dict[str, Any]:
    """Every prefetch key, filled as a server answers its search (`searched`), or with every resource of
    the key's type (an open server asked without category); `added` resources join the record."""
    by_key: dict[str, list[dict[str, Any]]] = {key: [] for key in KEY_OF_TYPE.values()}
    for resource in list(record.resources) + list(added):
        key = KEY_OF_TYPE.get(resource["resourceType"])
        if key is not None and (not searched or _answers(key, resource)):
            by_key[key].append(resource)
    out: dict[str, Any] = {"patient": next(r for r in record.resources if r["resourceType"] == "Patient")}
    out.update({key: searchset(resources) for key, resources in by_key.items()})
    out["encounter"] = copy.deepcopy(encounter if encounter is not None else record.latest_encounter)
    return out


def condition(record: Record, rid: str, system: str, code: str, display: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}
                ]
            }
        ],
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "onsetDateTime": onset,
    }
