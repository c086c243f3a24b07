"""/healthz, /readyz and /metrics: as operators read them, with no patient data in any label."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import respx
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.storage.settings import StorageSettings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture


def test_healthz_answers_without_authentication() -> None:
    client = TestClient(create_app(clock=lambda: NOW))  # client JWTs required: health stays open
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_needs_the_database(tmp_path: Path) -> None:
    storage = StorageSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db", patient_hash_key="k" * 40)
    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage)
    not_started = TestClient(app).get("/readyz")
    assert not_started.status_code == 503 and not_started.json()["checks"]["database"] == "not open"
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {
            "status": "ready",
            "checks": {"valueSets": "ok", "database": "ok"},
        }


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_calls_cards_fhir_reads_and_carry_no_patient_data() -> None:
    settings = Settings(fhir_server_allowlist=["https://ehr.example.org/fhir"])
    client = TestClient(create_app(settings, clock=lambda: NOW, auth=NO_AUTH))
    before = client.get("/metrics").text
    request = load_fixture("urgent-new-paraparesis")
    assert client.post(SERVICE_URL, json=request).status_code == 200
    missing = copy.deepcopy(request)
    missing["fhirAuthorization"] = {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 60,
        "scope": "s",
        "subject": "c",
    }
    del missing["prefetch"]["observations"]
    with respx.mock:
        respx.get(url__startswith="https://ehr.example.org/fhir/").mock(return_value=httpx.Response(503))
        assert client.post(SERVICE_URL, json=missing).status_code == 412
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    service = "ms-back-pain-patient-view"
    assert (
        _sample(text, "cds_calls_total", service=service, status="200")
        == _sample(before, "cds_calls_total", service=service, status="200") + 1
    )
    assert _sample(text, "cds_calls_total", service=service, status="412") >= 1
    assert _sample(text, "cds_cards_total", service=service, indicator="critical") >= 1
    assert _sample(text, "cds_fhir_reads_total", outcome="http_error") >= 1
    assert _sample(text, "cds_call_duration_seconds_count", service=service, status="200") >= 1
    for value in (request["context"]["patientId"], "pv01-ms", "Paraparesis"):
        assert value not in text
