"""No PHI or tokens in the logs, one structured line per call, CORS and security headers."""

from __future__ import annotations

import copy
import json
import logging

import httpx
import respx
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.logs import JsonFormatter
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture

TOKEN = "very-secret-ehr-access-token"


def _phi_values(request: dict) -> set[str]:
    """Patient id, names, resource ids and every text of the request: none may reach a log line."""
    values = {request["context"]["patientId"], TOKEN}
    patient = request["prefetch"]["patient"]
    for name in patient.get("name", []):
        values.add(name.get("family", ""))
        values.update(name.get("given", []))
    for value in request["prefetch"].values():
        for entry in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            resource = entry["resource"]
            values.add(resource["id"])
            code = resource.get("code", {})
            if code.get("text"):
                values.add(code["text"])
    return {v for v in values if v and len(v) > 3}


def test_a_full_request_leaves_no_phi_or_token_in_the_logs(caplog) -> None:
    settings = Settings(fhir_server_allowlist=["https://ehr.example.org/fhir"])
    client = TestClient(create_app(settings, clock=lambda: NOW, auth=NO_AUTH))
    request = copy.deepcopy(load_fixture("urgent-new-paraparesis"))
    request["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "x",
        "subject": "cds",
    }
    phi = _phi_values(request)
    # Also exercise the warning paths: a broken resource, and a FHIR read that fails.
    request["prefetch"]["conditions"]["entry"].append(
        {"resource": {"resourceType": "Condition", "id": "broken-1", "code": "x"}}
    )
    failing = copy.deepcopy(request)
    del failing["prefetch"]["observations"]
    caplog.set_level(logging.DEBUG)
    with respx.mock:
        respx.get(url__startswith="https://ehr.example.org/fhir/").mock(
            return_value=httpx.Response(500, text=f"error for {TOKEN}")
        )
        assert client.post(SERVICE_URL, json=request).status_code == 200
        assert client.post(SERVICE_URL, json=failing).status_code == 412
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records] + [r.getMessage() for r in caplog.records]
    assert any(json.loads(line).get("event") == "cds_call" for line in lines if line.startswith("{"))
    leaked = {value for value in phi for line in lines if value in line}
    assert leaked == set()


def test_each_call_logs_one_structured_line(caplog) -> None:
    client = TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH))
    caplog.set_level(logging.INFO, logger="cds_service")
    request = load_fixture("urgent-new-paraparesis")
    client.post(SERVICE_URL, json=request)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "cds_call"]
    line = json.loads(JsonFormatter().format(record))
    assert line["hookInstance"] == request["hookInstance"]
    assert line["service"] == "ms-back-pain-patient-view" and line["status"] == 200 and line["cards"] == 1
    assert line["indicators"] == ["critical"] and line["duration_ms"] >= 0


def test_security_headers_on_every_answer(client: TestClient) -> None:
    for response in (client.get("/cds-services"), client.post(SERVICE_URL, content=b"{bad")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"


def test_cors_only_for_configured_origins() -> None:
    client = TestClient(
        create_app(Settings(cors_allow_origins=["https://sandbox.example.org"]), clock=lambda: NOW, auth=NO_AUTH)
    )
    preflight = {
        "Origin": "https://sandbox.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = client.options(SERVICE_URL, headers=preflight)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://sandbox.example.org"
    other = client.options(SERVICE_URL, headers={**preflight, "Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
    closed = TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH)).get(
        "/cds-services", headers={"Origin": "https://sandbox.example.org"}
    )
    assert "access-control-allow-origin" not in closed.headers


def test_the_call_line_says_which_optional_keys_the_decision_went_without(caplog) -> None:
    """One line per call: the optional prefetch keys that were unavailable are a field of the
    `cds_call` line (key names and our own reasons), not lines of their own."""
    client = TestClient(create_app(Settings(), clock=lambda: NOW, auth=NO_AUTH))
    request = copy.deepcopy(load_fixture("urgent-new-paraparesis"))
    request["prefetch"].pop("procedures", None)
    request["prefetch"]["diagnosticReports"] = None
    caplog.set_level(logging.INFO, logger="cds_service")
    assert client.post(SERVICE_URL, json=request).status_code == 200
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name.startswith("cds_service")]
    calls = [line for line in lines if line.get("event") == "cds_call"]
    assert len(calls) == 1
    missing = calls[0]["missing_optional"]
    assert {"procedures", "diagnosticReports"} <= set(missing)
    assert missing["diagnosticReports"].startswith("sent as null")
    assert not [line for line in lines if line.get("event") == "optional_data_missing"]
