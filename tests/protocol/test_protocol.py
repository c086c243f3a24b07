"""The CDS Hooks protocol over HTTP: discovery, tolerant request reading, and a clear JSON 4xx for
every kind of bad input. The service never answers 500 and never hangs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.settings import Settings
from tests.cds_hooks_rules import check_response
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture

URGENT = "urgent-new-paraparesis"


def _request(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture(URGENT))
    body.update(changes)
    return body


def _error(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code and body["message"]
    return body


# --- discovery ----------------------------------------------------------------------------------


def test_discovery_lists_the_patient_view_service(client: TestClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert {s["hook"] for s in services.values()} == {"patient-view", "order-select", "order-sign"}
    service = services["ms-back-pain-patient-view"]
    assert service["hook"] == "patient-view"
    assert service["id"] == "ms-back-pain-patient-view"
    assert service["title"] and service["description"]
    prefetch = service["prefetch"]
    assert "patient" not in prefetch  # no rule reads the Patient resource: not asked for (minimum necessary)
    assert prefetch["conditions"] == "Condition?patient={{context.patientId}}"
    assert prefetch["observations"] == "Observation?patient={{context.patientId}}&category=survey,exam,vital-signs"
    assert prefetch["imagingStudies"].startswith("ImagingStudy?patient={{context.patientId}}&modality=")
    for key, template in prefetch.items():
        assert "{{context.patientId}}" in template or key == "encounter"
    assert prefetch["encounter"] == "Encounter/{{context.encounterId}}"


# --- card content ---------------------------------------------------------------------------------


def test_chart_text_cannot_inject_markdown_into_the_card(client: TestClient) -> None:
    """Evidence quoted from the chart is one line with markdown syntax escaped: a note cannot add a
    link, emphasis, a heading, a table or HTML to the card the clinician reads."""
    body = copy.deepcopy(load_fixture("baseline-chief-complaint-narrative"))
    complaint = body["prefetch"]["observations"]["entry"][0]["resource"]
    complaint["valueString"] = "Back pain\n# **U** [o](https://e.x) <b> | a_b `c` \\"
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200, response.text
    detail = response.json()["cards"][0]["detail"]
    quoted = next(line for line in detail.splitlines() if "Back pain" in line)
    assert "Back pain \\# \\*\\*U\\*\\* \\[o\\](https://e.x) \\<b\\> \\| a\\_b \\`c\\` \\\\ (" in quoted
    assert "](https://e.x)" not in detail.replace("\\]", "")


# --- tolerant reading ------------------------------------------------------------------------------


def test_unknown_fields_everywhere_are_tolerated(client: TestClient) -> None:
    body = _request(extension={"vendor": 1}, someVendorField=[1, 2])
    body["context"]["vendorContext"] = {"x": 1}
    body["fhirAuthorization"] = {
        "access_token": "opaque-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Condition.read",
        "subject": "cds-service",
        "vendor": True,
    }
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "critical"


def test_resources_with_odd_or_broken_elements_are_read_or_skipped(client: TestClient) -> None:
    body = _request()
    entries = body["prefetch"]["conditions"]["entry"]
    # A vendor element FHIR R4 does not know, an invalid date, a code sent as a JSON number:
    entries[0]["resource"]["vendorFlag"] = True
    entries[1]["resource"]["recordedDate"] = "not-a-date"
    for entry in entries:
        for coding in entry["resource"].get("code", {}).get("coding", []):
            if coding["code"].isdigit():
                coding["code"] = int(coding["code"])
    entries.append({"resource": {"resourceType": "Condition", "code": "broken"}})  # unreadable: skipped
    entries.append({"resource": "not even an object"})
    entries.append(
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "informational"}]}}
    )
    entries.append({"fullUrl": "x"})
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "critical"


def test_single_resources_instead_of_bundles(client: TestClient) -> None:
    body = _request()
    conditions = [e["resource"] for e in body["prefetch"]["conditions"]["entry"]]
    body["prefetch"]["conditions"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": conditions[0]}],
    }
    body["prefetch"]["observations"] = conditions[1]  # a single resource as a prefetch value
    body["prefetch"]["imagingStudies"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": conditions[2]}],
    }
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "critical"


def test_resources_of_another_patient_are_ignored(client: TestClient) -> None:
    body = _request()
    body["context"]["patientId"] = "someone-else"
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}


# --- 412: data the decision needs is missing ------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["absent", None, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}]
)
def test_missing_conditions_is_412(client: TestClient, value: Any) -> None:
    body = _request()
    if value == "absent":
        del body["prefetch"]["conditions"]
    else:
        body["prefetch"]["conditions"] = value
    error = _error(client.post(SERVICE_URL, json=body), 412, "precondition_failed")
    assert [d["prefetchKey"] for d in error["details"]] == ["conditions"]


def test_no_prefetch_at_all_is_412(client: TestClient) -> None:
    body = _request()
    del body["prefetch"]
    _error(client.post(SERVICE_URL, json=body), 412, "precondition_failed")


def test_paginated_prefetch_is_not_taken_as_complete(client: TestClient) -> None:
    body = _request()
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": "https://ehr.example.org/fhir/Condition?page=2"}
    ]
    _error(client.post(SERVICE_URL, json=body), 412, "precondition_failed")


def test_observations_are_needed_only_once_ms_is_found(client: TestClient) -> None:
    no_ms = copy.deepcopy(load_fixture("no-card-back-pain-without-ms"))
    no_ms["prefetch"].pop("observations")
    no_ms["prefetch"].pop("imagingStudies")
    assert client.post(SERVICE_URL, json=no_ms).json() == {"cards": []}

    with_ms = _request()
    with_ms["prefetch"].pop("observations")
    error = _error(client.post(SERVICE_URL, json=with_ms), 412, "precondition_failed")
    assert [d["prefetchKey"] for d in error["details"]] == ["observations"]


def test_missing_medications_still_decides_and_says_so(client: TestClient) -> None:
    body = _request()
    body["prefetch"].pop("medications")
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert "Medication list not available: response to NSAIDs not assessed." in response.json()["cards"][0]["detail"]


# --- bad input: a JSON 4xx naming the problem -------------------------------------------------------


def test_unknown_service_is_404(client: TestClient) -> None:
    _error(client.post("/cds-services/no-such-service", json=_request()), 404, "unknown_service")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"hook": "patient-view",'])
def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    _error(client.post(SERVICE_URL, content=raw, headers={"content-type": "application/json"}), 400, "invalid_json")


@pytest.mark.parametrize("value", [[], "text", 42, None, True])
def test_non_object_body_is_400(client: TestClient, value: Any) -> None:
    _error(client.post(SERVICE_URL, content=json.dumps(value)), 400, "invalid_request")


def test_wrong_hook_is_400(client: TestClient) -> None:
    _error(client.post(SERVICE_URL, json=_request(hook="order-select")), 400, "wrong_hook")


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_missing_required_field_is_400(client: TestClient, field: str) -> None:
    body = _request()
    del body[field]
    error = _error(client.post(SERVICE_URL, json=body), 400, "invalid_request")
    assert [field] in [d["loc"] for d in error["details"]]


@pytest.mark.parametrize("field", ["patientId", "userId"])
def test_missing_context_field_is_400(client: TestClient, field: str) -> None:
    body = _request()
    del body["context"][field]
    error = _error(client.post(SERVICE_URL, json=body), 400, "invalid_context")
    assert ["context", field] in [d["loc"] for d in error["details"]]


@pytest.mark.parametrize(
    "context",
    [
        {"userId": "Practitioner/1", "patientId": "../../etc"},
        {"userId": "not a reference", "patientId": "p1"},
        {"userId": "Practitioner/1", "patientId": 12},
    ],
)
def test_malformed_context_is_400(client: TestClient, context: dict[str, Any]) -> None:
    _error(client.post(SERVICE_URL, json=_request(context=context)), 400, "invalid_context")


def test_token_without_fhir_server_is_400_and_not_echoed(client: TestClient) -> None:
    body = _request(fhirAuthorization={"access_token": "secret-token-123", "token_type": "Bearer"})
    del body["fhirServer"]
    response = client.post(SERVICE_URL, json=body)
    _error(response, 400, "invalid_request")
    assert "secret-token-123" not in response.text


def test_bad_values_are_not_echoed_in_errors(client: TestClient) -> None:
    body = _request(hookInstance={"patient name": "Jane Doe"})
    response = client.post(SERVICE_URL, json=body)
    _error(response, 400, "invalid_request")
    assert "Jane Doe" not in response.text


def _nested(levels: int) -> Any:
    nested: Any = "x"
    for _ in range(levels):
        nested = {"a": nested}
    return nested


def test_deeply_nested_body_is_400(client: TestClient) -> None:
    body = _request()
    body["context"]["vendorData"] = _nested(500)
    _error(client.post(SERVICE_URL, json=body), 400, "too_deeply_nested")


def test_deeply_nested_resource_is_skipped_and_the_rest_decided(client: TestClient) -> None:
    body = _request()
    bad = {
        "resourceType": "Condition",
        "id": "deep",
        "subject": {"reference": "Patient/pv01-patient"},
        "note": [{"text": "x", "extension": [_nested(900)]}],
    }
    body["prefetch"]["conditions"]["entry"].append({"resource": bad})
    body["prefetch"]["junk"] = _nested(900)  # not a key the service reads: never walked
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "critical"


def test_extremely_deep_json_is_400_not_a_crash(client: TestClient) -> None:
    raw = b'{"a":' * 5000 + b"1" + b"}" * 5000
    response = client.post(SERVICE_URL, content=raw)
    assert response.status_code == 400


def test_oversized_body_is_413() -> None:
    small = TestClient(create_app(Settings(max_body_bytes=10_000), clock=lambda: NOW, auth=NO_AUTH))
    body = _request()
    body["prefetch"]["padding"] = "x" * 20_000
    _error(small.post(SERVICE_URL, json=body), 413, "payload_too_large")
    # Without a Content-Length (chunked), the limit still holds while streaming.
    chunks = (json.dumps(body)[i : i + 1000].encode() for i in range(0, 40_000, 1000))
    _error(small.post(SERVICE_URL, content=chunks), 413, "payload_too_large")


def test_wrong_method_is_json_405(client: TestClient) -> None:
    _error(client.get(SERVICE_URL), 405, "method_not_allowed")


def test_the_service_stays_up_after_bad_input(client: TestClient) -> None:
    for raw in (b"[", b"{}", b"null", b'{"hook":1}'):
        assert 400 <= client.post(SERVICE_URL, content=raw).status_code < 500
    response = client.post(SERVICE_URL, json=load_fixture(URGENT))
    assert response.status_code == 200
    check_response(response.json())
