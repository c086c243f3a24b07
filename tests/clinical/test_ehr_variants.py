"""Patients the fixture author did not write, encoded the way real EHRs write them.

Each case builds a patient-view request from small FHIR R4 builders, POSTs it to the service and checks
the exact outcome RULES.md §1–2 demands: no card at all, or exactly one card whose indicator is
critical (urgent), warning (cord features) or info (baseline), with or without the spinal-MRI
suggestion (recommended at urgent / cord-features level, not recommended at baseline).

Codes come only from entries marked V / V2 / VERIFIED in shared/clinical/TERMINOLOGY.md; where no
verified code exists the resource carries a local code and free text, as EHRs do.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.cds_hooks_rules import check_response
from tests.conftest import NOW, SERVICE_URL

# --- code systems -------------------------------------------------------------------------------

SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10WHO = "http://hl7.org/fhir/sid/icd-10"
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOCAL = "https://ehr.example.org/CodeSystem/local-problem"
LOCAL_OBS = "https://ehr.example.org/CodeSystem/flowsheet-row"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

PATIENT_ID = "p1"
USER_ID = "Practitioner/dr-1"

NO_CARD = None
INDICATOR = {"urgent": "critical", "cord": "warning", "baseline": "info"}


def days_ago(days: int) -> str:
    return (NOW.date() - dt.timedelta(days=days)).isoformat()


def instant_days_ago(days: int) -> str:
    return (NOW - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- builders -----------------------------------------------------------------------------------


def coding(system: str, code: Any, display: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        result["display"] = display
    return result


def condition(
    rid: str,
    *codings: dict[str, Any],
    text: str | None = None,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    onset_days: int | None = None,
    recorded_days: int | None = None,
    abatement_days: int | None = None,
    category: str = "problem-list-item",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": category}]}
        ],
        "code": {"coding": list(codings)},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }
    if text is not None:
        resource["code"]["text"] = text
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    if onset_days is not None:
        resource["onsetDateTime"] = days_ago(onset_days)
    recorded = recorded_days if recorded_days is not None else onset_days
    if recorded is not None:
        resource["recordedDate"] = instant_days_ago(recorded)
    if abatement_days is not None:
        resource["abatementDateTime"] = days_ago(abatement_days)
    return resource


def observation(
    rid: str,
    *codings: dict[str, Any],
    text: str | None = None,
    status: str = "final",
    effective_days: int = 3,
    value_string: str | None = None,
    value_integer: int | None = None,
    body_site: dict[str, Any] | None = None,
    category: str = "survey",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}
        ],
        "code": {"coding": list(codings)},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": instant_days_ago(effective_days),
        "issued": instant_days_ago(effective_days),
    }
    if text is not None:
        resource["code"]["text"] = text
    if value_string is not None:
        resource["valueString"] = value_string
    if value_integer is not None:
        resource["valueInteger"] = value_integer
    if body_site is not None:
        resource["bodySite"] = {"coding": [body_site]}
    return resource


def imaging_study(
    rid: str,
    *body_sites: dict[str, Any],
    modality: str = "MR",
    started_days: int = 30,
    status: str = "available",
    description: str | None = None,
) -> dict[str, Any]:
    modality_coding = coding(DCM, modality)
    series = [
        {
            "uid": f"2.25.{1000 + number}",
            "number": number,
            "modality": modality_coding,
            "bodySite": site,
            "started": instant_days_ago(started_days),
            "numberOfInstances": 20,
        }
        for number, site in enumerate(body_sites, start=1)
    ]
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": rid,
        "status": status,
        "modality": [modality_coding],
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "started": instant_days_ago(started_days),
        "numberOfSeries": len(series),
        "series": series,
    }
    if description is not None:
        resource["description"] = description
    return resource


def medication_request(
    rid: str,
    *codings: dict[str, Any],
    text: str,
    authored_days: int,
    dosage: str | None = None,
    route_text: str | None = None,
    status: str = "active",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": list(codings), "text": text},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": instant_days_ago(authored_days),
        "requester": {"reference": USER_ID},
    }
    if dosage is not None or route_text is not None:
        instruction: dict[str, Any] = {}
        if dosage is not None:
            instruction["text"] = dosage
        if route_text is not None:
            instruction["route"] = {"text": route_text}
        resource["dosageInstruction"] = [instruction]
    return resource


PREFETCH_KEYS = {
    "Condition": "conditions",
    "Observation": "observations",
    "ImagingStudy": "imagingStudies",
    "MedicationRequest": "medications",
    "MedicationStatement": "medicationStatements",
}


def request(resources: list[dict[str, Any]]) -> dict[str, Any]:
    bundles: dict[str, list[dict[str, Any]]] = {key: [] for key in PREFETCH_KEYS.values()}
    for resource in resources:
        bundles[PREFETCH_KEYS[resource["resourceType"]]].append(resource)
    prefetch: dict[str, Any] = {
        "patient": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1984-02-11"}
    }
    for key, entries in bundles.items():
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": [
                {
                    "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in entries
            ],
        }
    return {
        "hook": "patient-view",
        "hookInstance": "5b1c7a0e-2f6b-4c1e-9d62-6f0f3a3b9e11",
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": USER_ID, "patientId": PATIENT_ID},
        "prefetch": prefetch,
    }


# --- building blocks of the patients --------------------------------------------------------------


def ms(*codings: dict[str, Any], text: str | None = None, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("onset_days", 3000)
    return condition("ms", *codings, text=text, **kwargs)


MS = ms(coding(SCT, "24700007", "Multiple sclerosis"), text="Multiple sclerosis")
LBP = condition(
    "lbp",
    coding(SCT, "279039007", "Low back pain"),
    text="Low back pain",
    onset_days=45,
    category="encounter-diagnosis",
)


def back_pain_icd(code: str, display: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("onset_days", 20)
    return condition("back", coding(ICD10CM, code, display), text=display, category="encounter-diagnosis", **kwargs)


def local_condition(rid: str, text: str, **kwargs: Any) -> dict[str, Any]:
    """A free-text problem entry under the EHR's own code, as many problem lists hold them."""
    return condition(rid, coding(LOCAL, f"LP-{zlib.crc32(text.encode()) % 100000}"), text=text, **kwargs)


def chief_complaint(value: str, **kwargs: Any) -> dict[str, Any]:
    # 10154-3 (V2). 8661-1 is only W+ in TERMINOLOGY.md, so it is not used here.
    return observation(
        "cc",
        coding(LOINC, "10154-3", "Chief complaint Narrative - Reported"),
        text="Chief complaint",
        value_string=value,
        **kwargs,
    )


def pain_score(score: int) -> dict[str, Any]:
    return observation(
        "pain",
        coding(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported"),
        text="Pain score (0-10)",
        value_integer=score,
        body_site=coding(SCT, "52612000", "Lumbar region back structure"),
        effective_days=2,
    )


def urgency(**kwargs: Any) -> dict[str, Any]:
    return condition(
        "urgency",
        coding(ICD10CM, "R39.15", "Urgency of urination"),
        text="Urgency of urination",
        category="encounter-diagnosis",
        **kwargs,
    )


CERVICAL = coding(SCT, "122494005", "Cervical spine")
THORACIC = coding(SCT, "122495006", "Thoracic spine")
LUMBAR = coding(SCT, "122496007", "Lumbar spine")
WHOLE_SPINE = coding(SCT, "421060004", "Spine")


# --- cases ---------------------------------------------------------------------------------------
# (resources, expected level or NO_CARD, MRI suggestion expected)

MS_CODED: list[Any] = [
    pytest.param([ms(coding(ICD10CM, "G35", "Multiple sclerosis")), LBP], "baseline", True, id="ms-icd10cm-G35-old"),
    pytest.param(
        [ms(coding(ICD10CM, "G35.A", "Relapsing-remitting multiple sclerosis")), LBP],
        "baseline",
        True,
        id="ms-icd10cm-G35.A",
    ),
    pytest.param(
        [ms(coding(ICD10CM, "G35.B1", "Active primary progressive multiple sclerosis")), LBP],
        "baseline",
        True,
        id="ms-icd10cm-G35.B1",
    ),
    pytest.param(
        [ms(coding(ICD10CM, "G35.C0", "Secondary progressive multiple sclerosis, unspecified")), LBP],
        "baseline",
        True,
        id="ms-icd10cm-G35.C0",
    ),
    pytest.param(
        [ms(coding(ICD10CM, "G35.D", "Multiple sclerosis, unspecified")), LBP], "baseline", True, id="ms-icd10cm-G35.D"
    ),
    pytest.param([ms(coding(ICD10CM, "G35B1")), LBP], "baseline", True, id="ms-icd10cm-undotted-G35B1"),
    pytest.param([ms(coding(ICD10CM, "g35.a")), LBP], "baseline", True, id="ms-icd10cm-lowercase-g35.a"),
    pytest.param([ms(coding(ICD10GM, "G35.10")), LBP], "baseline", True, id="ms-icd10gm-G35.10"),
    pytest.param([ms(coding(ICD10WHO, "G35", "Multiple sclerosis")), LBP], "baseline", True, id="ms-who-icd10-G35"),
    pytest.param(
        [ms(coding(SCT, "426373005", "Relapsing remitting multiple sclerosis")), LBP],
        "baseline",
        True,
        id="ms-snomed-RRMS-426373005",
    ),
    pytest.param(
        [ms(coding(SCT, "425500002", "Secondary progressive multiple sclerosis")), LBP],
        "baseline",
        True,
        id="ms-snomed-SPMS-425500002",
    ),
    pytest.param(
        [ms(coding(SCT, "428700003", "Primary progressive multiple sclerosis")), LBP],
        "baseline",
        True,
        id="ms-snomed-PPMS-428700003",
    ),
    pytest.param([ms(coding(SCT, 24700007)), LBP], "baseline", True, id="ms-snomed-code-as-json-number"),
    pytest.param(
        [ms(coding(LOCAL, "PL-4711"), text="Multiple sclerosis (relapsing)"), LBP],
        "baseline",
        True,
        id="ms-text-only-local-code",
    ),
    pytest.param(
        [ms(coding(LOCAL, "PL-4712", "Multiple sclerosis")), LBP], "baseline", True, id="ms-display-only-no-text"
    ),
]

NOT_MS: list[Any] = [
    pytest.param(
        [local_condition("fh", "Family history of multiple sclerosis", verification=None), LBP],
        NO_CARD,
        None,
        id="not-ms-family-history",
    ),
    pytest.param(
        [local_condition("fh", "FH: multiple sclerosis", verification=None), LBP], NO_CARD, None, id="not-ms-FH-colon"
    ),
    pytest.param(
        [local_condition("ro", "r/o multiple sclerosis", verification=None), LBP], NO_CARD, None, id="not-ms-rule-out"
    ),
    pytest.param(
        [local_condition("ro", "Multiple sclerosis ruled out", verification=None), LBP],
        NO_CARD,
        None,
        id="not-ms-ruled-out",
    ),
    pytest.param(
        [local_condition("no", "No evidence of multiple sclerosis", verification=None), LBP],
        NO_CARD,
        None,
        id="not-ms-no-evidence-of",
    ),
    pytest.param([local_condition("ssc", "Systemic sclerosis"), LBP], NO_CARD, None, id="not-ms-systemic-sclerosis"),
    pytest.param([local_condition("tsc", "Tuberous sclerosis"), LBP], NO_CARD, None, id="not-ms-tuberous-sclerosis"),
    pytest.param([local_condition("oto", "Otosclerosis"), LBP], NO_CARD, None, id="not-ms-otosclerosis"),
    pytest.param([local_condition("ath", "Atherosclerosis"), LBP], NO_CARD, None, id="not-ms-atherosclerosis"),
    # 445967004 is only W in TERMINOLOGY.md; used here solely as a code that must NOT count as MS.
    pytest.param(
        [
            condition(
                "cis", coding(SCT, "445967004", "Clinically isolated syndrome"), text="Clinically isolated syndrome"
            ),
            LBP,
        ],
        NO_CARD,
        None,
        id="not-ms-clinically-isolated-syndrome",
    ),
    pytest.param(
        [
            condition(
                "demy",
                coding(SCT, "6118003", "Demyelinating disease of central nervous system"),
                text="Demyelinating disease of central nervous system",
            ),
            LBP,
        ],
        NO_CARD,
        None,
        id="not-ms-demyelinating-disease-6118003",
    ),
    pytest.param(
        [ms(coding(SCT, "24700007", "Multiple sclerosis"), verification="refuted"), LBP],
        NO_CARD,
        None,
        id="not-ms-refuted",
    ),
    pytest.param(
        [ms(coding(SCT, "24700007", "Multiple sclerosis"), verification="entered-in-error"), LBP],
        NO_CARD,
        None,
        id="not-ms-entered-in-error",
    ),
    pytest.param(
        [ms(coding(SCT, "24700007", "Multiple sclerosis"), clinical="resolved", abatement_days=400), LBP],
        NO_CARD,
        None,
        id="not-ms-clinical-resolved",
    ),
    pytest.param(
        [ms(coding(SCT, "24700007", "Multiple sclerosis"), clinical="inactive"), LBP],
        NO_CARD,
        None,
        id="not-ms-clinical-inactive",
    ),
    pytest.param(
        [ms(coding(SCT, "24700007", "Multiple sclerosis"), clinical="remission"), LBP],
        NO_CARD,
        None,
        id="not-ms-clinical-remission",
    ),
]

BACK_PAIN: list[Any] = [
    pytest.param(
        [MS, back_pain_icd("M54.50", "Low back pain, unspecified")], "baseline", True, id="back-pain-icd10cm-M54.50"
    ),
    pytest.param(
        [MS, back_pain_icd("M54.16", "Radiculopathy, lumbar region")], "baseline", True, id="back-pain-icd10cm-M54.16"
    ),
    pytest.param([MS, back_pain_icd("M54.2", "Cervicalgia")], "baseline", True, id="back-pain-icd10cm-M54.2-neck"),
    pytest.param(
        [MS, back_pain_icd("M54.9", "Dorsalgia, unspecified")], "baseline", True, id="back-pain-icd10cm-M54.9"
    ),
    pytest.param(
        [MS, back_pain_icd("M54.81", "Occipital neuralgia")],
        NO_CARD,
        None,
        id="not-back-pain-M54.81-occipital-neuralgia",
    ),
    pytest.param(
        [MS, back_pain_icd("M54.02", "Panniculitis affecting regions of neck and back, cervical region")],
        NO_CARD,
        None,
        id="not-back-pain-M54.02-panniculitis",
    ),
    pytest.param(
        [
            MS,
            back_pain_icd(
                "M54.50", "Low back pain, unspecified", clinical="resolved", onset_days=760, abatement_days=700
            ),
        ],
        NO_CARD,
        None,
        id="not-back-pain-resolved-2-years-ago",
    ),
    pytest.param(
        [
            MS,
            back_pain_icd("M54.50", "Low back pain, unspecified", clinical="resolved", onset_days=30, abatement_days=5),
        ],
        "baseline",
        True,
        id="back-pain-resolved-onset-30-days-ago",
    ),
    pytest.param(
        [MS, chief_complaint("lower back pain x2 weeks")], "baseline", True, id="back-pain-chief-complaint-text"
    ),
    pytest.param([MS, chief_complaint("denies back pain")], NO_CARD, None, id="not-back-pain-chief-complaint-denies"),
    pytest.param(
        [MS, chief_complaint("lower back pain x2 weeks", effective_days=200)],
        NO_CARD,
        None,
        id="not-back-pain-chief-complaint-200-days-old",
    ),
    pytest.param([MS, pain_score(0)], NO_CARD, None, id="not-back-pain-lumbar-pain-score-0"),
    pytest.param([MS, pain_score(7)], "baseline", True, id="back-pain-lumbar-pain-score-7"),
    pytest.param(
        [MS, chief_complaint("lower back pain x2 weeks", status="entered-in-error")],
        NO_CARD,
        None,
        id="not-back-pain-observation-entered-in-error",
    ),
]

LEVELS: list[Any] = [
    pytest.param([MS, LBP, urgency(onset_days=10)], "urgent", True, id="urgent-new-R39.15-10-days"),
    pytest.param([MS, LBP, urgency(onset_days=400)], "baseline", True, id="baseline-chronic-R39.15-400-days"),
    pytest.param(
        [MS, LBP, urgency(onset_days=10, verification="refuted")], "baseline", True, id="baseline-refuted-red-flag"
    ),
    pytest.param(
        [MS, LBP, local_condition("ros", "Denies weakness or numbness", onset_days=5, verification=None)],
        "baseline",
        True,
        id="baseline-denies-weakness-numbness-condition-text",
    ),
    pytest.param(
        [
            MS,
            LBP,
            observation(
                "ros",
                coding(LOCAL_OBS, "ROS-NEURO"),
                text="Review of systems - neurological",
                category="exam",
                value_string="Denies weakness or numbness",
            ),
        ],
        "baseline",
        True,
        id="baseline-denies-weakness-numbness-observation-value",
    ),
    pytest.param(
        [MS, LBP, local_condition("lhermitte", "Lhermitte's sign", onset_days=20)],
        "cord",
        True,
        id="cord-lhermitte-sign-text",
    ),
    pytest.param(
        [MS, LBP, local_condition("shock", "electric shock down the back when flexing the neck", onset_days=20)],
        "cord",
        True,
        id="cord-electric-shock-on-neck-flexion-text",
    ),
    pytest.param(
        [MS, LBP, local_condition("dysuria", "burning on urination", onset_days=5, category="encounter-diagnosis")],
        "baseline",
        True,
        id="baseline-burning-on-urination-is-not-cord",
    ),
    pytest.param(
        [
            MS,
            LBP,
            medication_request(
                "diclofenac-gel",
                coding(RXNORM, "3355", "diclofenac"),
                text="Diclofenac sodium 1 % topical gel",
                authored_days=30,
                dosage="Apply 4 g to the lower back four times daily",
                route_text="topical",
            ),
        ],
        "baseline",
        True,
        id="baseline-topical-diclofenac-over-14-days",
    ),
    pytest.param(
        [
            MS,
            LBP,
            medication_request(
                "aspirin",
                coding(RXNORM, "1191", "aspirin"),
                text="Aspirin 81 MG Oral Tablet",
                authored_days=30,
                dosage="Take 1 tablet (81 mg) by mouth once daily",
                route_text="oral",
            ),
        ],
        "baseline",
        True,
        id="baseline-aspirin-81mg-over-14-days",
    ),
    pytest.param(
        [
            MS,
            LBP,
            medication_request(
                "naproxen",
                coding(RXNORM, "7258", "naproxen"),
                text="naproxen 500 mg oral tablet",
                authored_days=30,
                dosage="Take 1 tablet (500 mg) by mouth twice daily with food",
                route_text="oral",
            ),
        ],
        "cord",
        True,
        id="cord-naproxen-500mg-started-30-days-ago",
    ),
    pytest.param(
        [
            MS,
            LBP,
            medication_request(
                "ibuprofen",
                coding(RXNORM, "5640", "ibuprofen"),
                text="ibuprofen 400 mg oral tablet",
                authored_days=5,
                dosage="Take 1 tablet (400 mg) by mouth every 8 hours as needed",
                route_text="oral",
            ),
        ],
        "baseline",
        True,
        id="baseline-ibuprofen-started-5-days-ago",
    ),
]

MRI: list[Any] = [
    pytest.param(
        [MS, LBP, imaging_study("mri-ct", CERVICAL, THORACIC, description="MRI cervical and thoracic spine")],
        "baseline",
        False,
        id="mri-recent-cervical-thoracic-no-suggestion",
    ),
    pytest.param(
        [
            MS,
            LBP,
            imaging_study(
                "mri-ct", CERVICAL, THORACIC, status="cancelled", description="MRI cervical and thoracic spine"
            ),
        ],
        "baseline",
        True,
        id="mri-cancelled-cervical-thoracic-suggests",
    ),
    pytest.param(
        [MS, LBP, imaging_study("mri-l", LUMBAR, description="MRI lumbar spine")],
        "baseline",
        True,
        id="mri-lumbar-only-suggests",
    ),
    pytest.param(
        [MS, LBP, imaging_study("mri-spine", WHOLE_SPINE, description="MRI whole spine")],
        "baseline",
        False,
        id="mri-recent-whole-spine-421060004-no-suggestion",
    ),
    pytest.param(
        # A CT covering both cervical and thoracic spine: only the modality keeps it from counting.
        [
            MS,
            LBP,
            imaging_study("ct-c", CERVICAL, THORACIC, modality="CT", description="CT cervical and thoracic spine"),
        ],
        "baseline",
        True,
        id="ct-cervical-thoracic-is-not-mri-suggests",
    ),
]


@pytest.mark.parametrize(("resources", "level", "suggestion"), MS_CODED + NOT_MS + BACK_PAIN + LEVELS + MRI)
def test_ehr_variant(
    client: TestClient, resources: list[dict[str, Any]], level: str | None, suggestion: bool | None
) -> None:
    response = client.post(SERVICE_URL, json=request(resources))
    assert response.status_code == 200, response.text
    body = response.json()
    check_response(body)
    if level is NO_CARD:
        assert body == {"cards": []}
        return
    assert len(body["cards"]) == 1, body
    (card,) = body["cards"]
    assert card["indicator"] == INDICATOR[level], card["summary"]
    suggestions = card.get("suggestions") or []
    if suggestion:
        assert len(suggestions) == 1, suggestions
        assert suggestions[0]["isRecommended"] is (level in ("urgent", "cord"))
    else:
        assert suggestions == [], suggestions
