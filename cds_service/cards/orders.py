"""Draft orders the cards suggest: FHIR R4 ServiceRequests for the spinal MRI, validated with
`fhir.resources` before they leave the service. The service suggests imaging only: never a
medication order or a diagnosis.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.clinical import valuesets

# Region -> body site (SNOMED, TERMINOLOGY.md 2d). The order codes come from the spinal_mri value set.
_BODY_SITE = {
    "cervical": ("122494005", "Cervical spine"),
    "thoracic": ("122495006", "Thoracic spine"),
}
_REQUESTER_TYPES = ("Practitioner/", "PractitionerRole/")


def spinal_mri_request(
    region: str,
    patient_id: str,
    user_id: str | None,
    reasons: list[str],
    authored: dt.datetime,
) -> dict[str, Any]:
    """A draft ServiceRequest for an MRI of `region` (cervical / thoracic) without and with contrast."""
    site_code, site_display = _BODY_SITE[region]
    codings = [dict(c) for c in valuesets.load("spinal_mri")["orderable"][region]]
    loinc = next(c for c in codings if c["system"] == valuesets.LOINC)
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": str(uuid.uuid4()),
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": codings, "text": loinc["display"]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "bodySite": [{"coding": [{"system": valuesets.SNOMED, "code": site_code, "display": site_display}], "text": site_display}],
        "authoredOn": authored.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
        "reasonReference": [{"reference": ref} for ref in reasons],
    }
    if user_id and user_id.startswith(_REQUESTER_TYPES):
        resource["requester"] = {"reference": user_id}
    if not resource["reasonReference"]:
        del resource["reasonReference"]
    # Raises if we ever build an invalid resource: a bug to catch in tests, never to send to an EHR.
    ServiceRequest.model_validate(resource)
    return resource
