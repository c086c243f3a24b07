"""Draft orders the cards suggest: FHIR R4 ServiceRequests for the spinal MRI, built from a template
validated with `fhir.resources` at start-up (and every one the tests see is validated again).
The service suggests imaging only: never a
medication order or a diagnosis.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.clinical import valuesets

# Region -> body site (SNOMED, TERMINOLOGY.md 2d). The order codes come from the spinal_mri value set.
_BODY_SITE = {
    "cervical": ("122494005", "Cervical spine"),
    "thoracic": ("122495006", "Thoracic spine"),
}
_REQUESTER_TYPES = ("Practitioner/", "PractitionerRole/")
# What R4 allows in ServiceRequest.reasonReference.
REASON_REFERENCE_TYPES = frozenset({"Condition", "Observation", "DiagnosticReport", "DocumentReference"})


@cache
def _template(region: str) -> bytes:
    """The constant part of the order for `region` as JSON, validated with `fhir.resources` once (at
    the first call, made at start-up). Per call only validated values are filled in: a FHIR id from
    the context, references to resources that were themselves validated, and a timestamp we format."""
    site_code, site_display = _BODY_SITE[region]
    codings = [dict(c) for c in valuesets.load("spinal_mri")["orderable"][region]]
    loinc = next(c for c in codings if c["system"] == valuesets.LOINC)
    template: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": codings, "text": loinc["display"]},
        "bodySite": [
            {"coding": [{"system": valuesets.SNOMED, "code": site_code, "display": site_display}], "text": site_display}
        ],
    }
    sample = {
        **template,
        "id": str(uuid.uuid4()),
        "subject": {"reference": "Patient/example"},
        "authoredOn": "2026-01-01T00:00:00+00:00",
        "reasonCode": [{"coding": [{"system": valuesets.SNOMED, "code": "24700007"}], "text": "Multiple sclerosis"}],
        "reasonReference": [{"reference": "Condition/example"}],
        "requester": {"reference": "Practitioner/example"},
    }
    ServiceRequest.model_validate(sample)  # raises at start-up if the template is ever wrong
    return orjson.dumps(template)


def warm_up() -> None:
    for region in _BODY_SITE:
        _template(region)


@dataclass(frozen=True)
class OrderReasons:
    """Why the MRI is ordered: references to chart resources R4 allows in `reasonReference`
    (Condition, Observation, DiagnosticReport, DocumentReference), and CodeableConcepts for the rest
    (evidence found on a draft order, whose id is the client's placeholder and must never be named)."""

    references: tuple[str, ...] = ()
    concepts: tuple[dict[str, Any], ...] = ()


def spinal_mri_request(
    region: str,
    patient_id: str,
    user_id: str | None,
    reasons: OrderReasons,
    authored: dt.datetime,
) -> dict[str, Any]:
    """A draft ServiceRequest for an MRI of `region` (cervical / thoracic) without and with contrast."""
    resource: dict[str, Any] = orjson.loads(_template(region))  # a fresh copy (5x faster than deepcopy)
    resource["id"] = str(uuid.uuid4())
    resource["subject"] = {"reference": f"Patient/{patient_id}"}
    resource["authoredOn"] = authored.astimezone(dt.UTC).isoformat(timespec="seconds")
    if reasons.concepts:
        resource["reasonCode"] = [dict(concept) for concept in reasons.concepts]
    if reasons.references:
        resource["reasonReference"] = [{"reference": ref} for ref in reasons.references]
    if user_id and user_id.startswith(_REQUESTER_TYPES):
        resource["requester"] = {"reference": user_id}
    return resource
