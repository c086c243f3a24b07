"""Resources shaped as real EHRs keep them, for the data-access tests (unit and integration).

Epic and Oracle Health expose imaging as radiology DiagnosticReports and performed studies as
Procedures; Epic carries the chief complaint as the Encounter's reason for visit; open servers (HAPI,
Medplum) hold findings with no category at all; Epic adds OperationOutcome entries to searchsets.
"""

from __future__ import annotations

from typing import Any

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def radiology_report(patient_id: str, rid: str, date: str) -> dict[str, Any]:
    """A final radiology report of an MRI of the cervical spine without and with contrast."""
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": LOINC, "code": "LP29684-5", "display": "Radiology"}]}],
        "code": {
            "coding": [{"system": LOINC, "code": "24937-5", "display": "MR Cervical spine WO and W contrast IV"}],
            "text": "MRI cervical spine without and with contrast",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": date,
        "issued": f"{date}T16:00:00Z",
        "conclusion": "No new lesion.",
    }


def imaging_procedure(patient_id: str, rid: str, date: str) -> dict[str, Any]:
    """A completed MRI of the thoracic spine without and with contrast, recorded as a Procedure."""
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "category": {"coding": [{"system": SNOMED, "code": "103693007", "display": "Diagnostic procedure"}]},
        "code": {
            "coding": [{"system": LOINC, "code": "24981-3", "display": "MR Thoracic spine WO and W contrast IV"}],
            "text": "MRI thoracic spine without and with contrast",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "performedDateTime": date,
    }


def visit(patient_id: str, rid: str, date: str) -> dict[str, Any]:
    """An office visit whose reason (the chief complaint, as Epic carries it) is back pain."""
    return {
        "resourceType": "Encounter",
        "id": rid,
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": f"{date}T09:00:00Z"},
        "reasonCode": [
            {"coding": [{"system": SNOMED, "code": "161891005", "display": "Backache"}], "text": "Back pain"}
        ],
    }


def uncategorised_finding(patient_id: str, rid: str, date: str, text: str) -> dict[str, Any]:
    """A finding kept as open servers often keep them: no category, coded only by its text."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"text": "Symptom"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": date,
        "valueString": text,
    }


def uncategorised_chief_complaint(patient_id: str, rid: str, date: str, text: str) -> dict[str, Any]:
    """A chief complaint (LOINC 8661-1) stored without a category."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8661-1", "display": "Chief complaint - Reported"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": date,
        "valueString": text,
    }


def outcome_entry(severity: str, code: str = "informational") -> dict[str, Any]:
    """An OperationOutcome entry of a searchset, as Epic adds them (its text may quote the query)."""
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": "patient=SECRET-PATIENT-ID"}],
        },
        "search": {"mode": "outcome"},
    }


def searchset(resources: list[dict[str, Any]], *extra_entries: dict[str, Any]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": entries + list(extra_entries),
    }
