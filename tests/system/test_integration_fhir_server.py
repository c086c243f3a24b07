"""Integration: the FHIR-server fallback against a real FHIR R4 server on loopback.

The server is Medplum's FhirRouter + MemoryRepository (npm, see integration/medplum/), wrapped in a
small Node HTTP server that adds Bundle paging links. Set FHIR_BASE_URL to use another server (it must
accept PUT Type/id with client ids). Without integration/medplum/node_modules the tests are skipped,
unless CI=true, where a server that cannot start is a failure.

For each fixture: the resources of its prefetch are loaded into the server, then the same request
without `prefetch` (so the service must search the server) must give the same response as the
full-prefetch request, apart from generated ids and times.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.services.patient_data import PREFETCH_POLICY
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture
from tests.system.fhir_servers import FHIR_JSON, prefetch_resources, put, skip_without_medplum, start_medplum, stop

pytestmark = pytest.mark.slow  # multi-process / real-server: left out of the fast run (-m 'not slow')

FIXTURE_NAMES = ("urgent-new-paraparesis", "recent-mri-covers-cord")
AUTH = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
PAGING_PATIENT_FIXTURE = "urgent-new-paraparesis"
EXTRA_CONDITIONS = 30
DEADLINE_S = 10.0  # generous: a Node server and the tests on two shared cores; speed is measured in bench/


@pytest.fixture(scope="module")
def fhir_base() -> Iterator[str]:
    proc: subprocess.Popen[str] | None = None
    base = os.environ.get("FHIR_BASE_URL", "").rstrip("/")
    if not base:
        skip_without_medplum()
        proc, base = start_medplum()
    try:
        with httpx.Client(timeout=30) as http:
            for name in FIXTURE_NAMES:
                for resource in prefetch_resources(load_fixture(name)):
                    put(http, base, resource)
        yield base
    finally:
        if proc is not None:
            stop(proc)


def _normalise(body: Any) -> Any:
    """Drop what is generated per call: card/suggestion uuids, ServiceRequest ids and authoredOn."""
    if isinstance(body, list):
        return [_normalise(x) for x in body]
    if isinstance(body, dict):
        out = {k: _normalise(v) for k, v in body.items() if k != "uuid"}
        if out.get("resourceType") == "ServiceRequest":
            out.pop("id", None)
            out.pop("authoredOn", None)
        return out
    return body


def _server_request(fixture: dict[str, Any], base: str) -> dict[str, Any]:
    body = copy.deepcopy(fixture)
    body.pop("prefetch", None)
    body["fhirServer"] = base
    body["fhirAuthorization"] = dict(AUTH)
    return body


def _post(settings: Settings | None, body: dict[str, Any]) -> httpx.Response:
    app = create_app(settings, clock=lambda: NOW, auth=NO_AUTH)
    with TestClient(app) as c:
        return c.post(SERVICE_URL, json=body)


def _assert_same_as_prefetch(name: str, base: str) -> None:
    fixture = load_fixture(name)
    expected = _post(None, copy.deepcopy(fixture))
    assert expected.status_code == 200, expected.text
    got = _post(
        Settings(fhir_server_allowlist=[base], fhir_deadline_seconds=DEADLINE_S), _server_request(fixture, base)
    )
    assert got.status_code == 200, got.text
    assert got.json().get("cards"), "the server-fetch response has no cards"
    assert _normalise(got.json()) == _normalise(expected.json())


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_server_fetch_matches_prefetch(fhir_base: str, name: str) -> None:
    _assert_same_as_prefetch(name, fhir_base)


def test_discovery_prefetch_templates_are_searches_the_server_accepts(fhir_base: str) -> None:
    app = create_app(clock=lambda: NOW, auth=NO_AUTH)
    with TestClient(app) as c:
        services = c.get("/cds-services").json()["services"]
    templates = {f"{s['id']}:{key}": template for s in services for key, template in (s.get("prefetch") or {}).items()}
    assert templates
    for name in FIXTURE_NAMES:
        # With an encounterId, so that every template is filled (the visit's read answers 404 here).
        context = {**load_fixture(name)["context"], "encounterId": "no-such-visit"}
        patient_id = context["patientId"]
        queries = {key: filled.query for key, filled in PREFETCH_POLICY.fill(context).items()}
        assert set(queries) == set(PREFETCH_POLICY.templates())
        with httpx.Client(timeout=30, headers={"Accept": FHIR_JSON}) as http:
            for key, template in templates.items():
                query = queries[key.split(":", 1)[1]]
                assert template == PREFETCH_POLICY.templates()[key.split(":", 1)[1]]
                r = http.get(urljoin(fhir_base + "/", query))
                if "?" not in query:
                    assert r.status_code == 404, f"{key} ({query}): HTTP {r.status_code}"
                    continue
                assert r.status_code == 200, f"{key} ({query}): HTTP {r.status_code} {r.text[:500]}"
                body = r.json()
                assert body.get("resourceType") == "Bundle", f"{key}: {body.get('resourceType')}"
                assert body.get("type") == "searchset"
                assert f"patient={patient_id}" in query


def test_server_pages_with_next_links_and_service_follows_them(fhir_base: str) -> None:
    fixture = load_fixture(PAGING_PATIENT_FIXTURE)
    patient_id = fixture["context"]["patientId"]
    with httpx.Client(timeout=30, headers={"Accept": FHIR_JSON}) as http:
        for i in range(EXTRA_CONDITIONS):
            # Clinically irrelevant (resolved hypertension): must not change the card.
            put(
                http,
                fhir_base,
                {
                    "resourceType": "Condition",
                    "id": f"{patient_id}-paging-{i:02d}",
                    "clinicalStatus": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}
                        ]
                    },
                    "code": {
                        "coding": [
                            {"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}
                        ]
                    },
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "recordedDate": "2010-01-01",
                },
            )
        url: str | None = f"{fhir_base}/Condition?patient={patient_id}&_count=10"
        pages = 0
        ids: list[str] = []
        total = None
        while url is not None:
            assert url.startswith(fhir_base + "/"), url
            r = http.get(url)
            assert r.status_code == 200, r.text[:500]
            bundle = r.json()
            assert bundle["resourceType"] == "Bundle"
            total = bundle.get("total")
            entries = bundle.get("entry") or []
            assert len(entries) <= 10
            ids += [e["resource"]["id"] for e in entries]
            pages += 1
            url = next((link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
            assert pages <= 10, "paging does not end"
    expected_total = EXTRA_CONDITIONS + len(fixture["prefetch"]["conditions"]["entry"])
    assert total == expected_total
    assert len(ids) == len(set(ids)) == expected_total
    assert pages == -(-expected_total // 10)
    # The service reads every page (server default page size is smaller than the Condition count)
    # and still answers as with the full prefetch.
    _assert_same_as_prefetch(PAGING_PATIENT_FIXTURE, fhir_base)
