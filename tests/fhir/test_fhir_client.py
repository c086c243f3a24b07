"""Reading missing prefetch from the EHR's FHIR server, against a respx stub of that server.

The same patient gives the same card with no prefetch as with full prefetch; only missing keys are
fetched; the token goes only to an allowed fhirServer; every fault ends within the deadline as 412
(or 403 for a server that is not allowed), never a 500 and never a card built on missing data.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.services.patient_data import PREFETCH_POLICY
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture

BASE = "https://ehr.example.org/fhir"
TOKEN = "opaque-access-token-42"
FIXTURE = "urgent-new-paraparesis"
DEADLINE = 0.5


@pytest.fixture()
def app_client() -> TestClient:
    settings = Settings(fhir_server_allowlist=[BASE], fhir_deadline_seconds=DEADLINE)
    with TestClient(create_app(settings, clock=lambda: NOW, auth=NO_AUTH)) as client:
        yield client


ALL_KEYS = tuple(PREFETCH_POLICY.templates())
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0}


def _request(without: tuple[str, ...] = ALL_KEYS) -> dict[str, Any]:
    """The fixture request, every policy key present (empty where the fixture has none) but `without`."""
    body = copy.deepcopy(load_fixture(FIXTURE))
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/*.read",
        "subject": "cds",
    }
    body["prefetch"].pop("patient", None)
    for key in ALL_KEYS:
        body["prefetch"].setdefault(key, copy.deepcopy(EMPTY))
    for key in without:
        body["prefetch"].pop(key, None)
    return body


def _queries(patient_id: str = "pv01-patient") -> dict[str, str]:
    return {key: filled.query for key, filled in PREFETCH_POLICY.fill({"patientId": patient_id}).items()}


def _serve_fixture(router: respx.MockRouter) -> dict[str, respx.Route]:
    """Each policy key's exact search answers with the fixture's value (an empty searchset when the
    fixture has none; the unqualified Observation search with the fixture's Observations)."""
    prefetch = load_fixture(FIXTURE)["prefetch"]
    routes = {}
    for key, query in _queries().items():
        value = prefetch.get("observations" if key == "allObservations" else key) or EMPTY
        routes[key] = router.get(f"{BASE}/{query}").mock(return_value=httpx.Response(200, json=value))
    return routes


def _strip_uuids(body: dict[str, Any]) -> dict[str, Any]:
    for card in body["cards"]:
        card.pop("uuid")
        for s in card.get("suggestions", []):
            s.pop("uuid")
            for a in s["actions"]:
                a["resource"].pop("id")
    return body


def test_no_prefetch_gives_the_same_card_as_full_prefetch(app_client: TestClient) -> None:
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        fetched = app_client.post(SERVICE_URL, json=_request())
    full = app_client.post(SERVICE_URL, json=load_fixture(FIXTURE))
    assert fetched.status_code == 200, fetched.text
    assert _strip_uuids(fetched.json()) == _strip_uuids(full.json())
    request = routes["conditions"].calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/fhir+json"
    assert "patient=pv01-patient" in str(request.url)


def test_only_missing_keys_are_fetched(app_client: TestClient) -> None:
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        response = app_client.post(SERVICE_URL, json=_request(without=("observations",)))
    assert response.status_code == 200
    assert routes["observations"].call_count == 1
    assert all(route.call_count == 0 for key, route in routes.items() if key != "observations")


def test_server_not_on_allowlist_is_refused_and_nothing_is_sent(app_client: TestClient) -> None:
    body = _request()
    body["fhirServer"] = "https://attacker.example.com/fhir"
    with respx.mock(assert_all_called=False) as router:
        anything = router.route().mock(return_value=httpx.Response(200, json={}))
        response = app_client.post(SERVICE_URL, json=body)
    assert response.status_code == 403 and response.json()["error"] == "fhir_server_not_allowed"
    assert anything.call_count == 0
    assert TOKEN not in response.text


def test_without_allowlist_the_service_never_reads_and_answers_412() -> None:
    client = TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH))
    with respx.mock(assert_all_called=False) as router:
        anything = router.route().mock(return_value=httpx.Response(200, json={}))
        response = client.post(SERVICE_URL, json=_request())
    assert response.status_code == 412 and anything.call_count == 0


def _page(next_url: str | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


async def _slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(5)
    return httpx.Response(200, json=_page(None))


FAULTS = {
    "timeout": httpx.ReadTimeout("timed out"),
    "connection-refused": httpx.ConnectError("refused"),
    "unauthorized-401": httpx.Response(401),
    "forbidden-403": httpx.Response(403),
    "not-found-404": httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []}),
    "server-error-500": httpx.Response(500, text="boom"),
    "broken-json": httpx.Response(200, content=b"{not json"),
    "not-a-bundle": httpx.Response(200, json={"resourceType": "Patient", "id": "x"}),
    "operation-outcome": httpx.Response(
        200, json={"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    ),
    "json-array": httpx.Response(200, json=[1, 2]),
    "next-to-other-host": httpx.Response(200, json=_page("https://elsewhere.example.com/fhir/Condition?page=2")),
    "next-loops": httpx.Response(200, json=_page(f"{BASE}/Condition?patient=pv01-patient")),
    "slow-server": _slow,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_fault_ends_in_412_within_the_deadline(app_client: TestClient, fault: str) -> None:
    with respx.mock(assert_all_called=False) as router:
        effect = FAULTS[fault]
        route = _serve_fixture(router)["conditions"]
        if isinstance(effect, httpx.Response):
            route.mock(return_value=effect)
        else:
            route.mock(side_effect=effect)
        started = time.perf_counter()
        response = app_client.post(SERVICE_URL, json=_request())
        elapsed = time.perf_counter() - started
    assert response.status_code == 412, response.text
    (detail,) = response.json()["details"]
    assert detail["prefetchKey"] == "conditions"
    assert elapsed < DEADLINE + 2.0  # the slow server would take 5 s: the deadline cut it off
    assert TOKEN not in response.text


def test_endless_paging_stops_at_the_cap(app_client: TestClient) -> None:
    counter = {"n": 0}

    def endless(request: httpx.Request) -> httpx.Response:
        counter["n"] += 1
        return httpx.Response(200, json=_page(f"{BASE}/Condition?patient=pv01-patient&page={counter['n']}"))

    with respx.mock(assert_all_called=False) as router:
        _serve_fixture(router)["conditions"].mock(side_effect=endless)
        response = app_client.post(SERVICE_URL, json=_request())
    assert response.status_code == 412
    assert counter["n"] <= 20


def test_paging_is_followed_and_pages_are_combined(app_client: TestClient) -> None:
    conditions = load_fixture(FIXTURE)["prefetch"]["conditions"]["entry"]
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": conditions[:1],
        "link": [{"relation": "next", "url": f"{BASE}/Condition?patient=pv01-patient&_page=2"}],
    }
    second = {"resourceType": "Bundle", "type": "searchset", "entry": conditions[1:]}
    with respx.mock(assert_all_called=False) as router:
        _serve_fixture(router)
        router.get(url__startswith=f"{BASE}/Condition?patient=pv01-patient&_page=2").mock(
            return_value=httpx.Response(200, json=second)
        )
        router.get(f"{BASE}/Condition?patient=pv01-patient").mock(return_value=httpx.Response(200, json=first))
        response = app_client.post(SERVICE_URL, json=_request())
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "critical"


def test_searches_run_concurrently(app_client: TestClient) -> None:
    """Measured by overlap, not by wall time (timing belongs in bench/): both searches are in flight at once."""
    prefetch = load_fixture(FIXTURE)["prefetch"]
    in_flight = {"now": 0, "max": 0}

    def delayed(value: dict[str, Any]):
        async def answer(request: httpx.Request) -> httpx.Response:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
            await asyncio.sleep(0.05)
            in_flight["now"] -= 1
            return httpx.Response(200, json=value)

        return answer

    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        for key in ("observations", "imagingStudies"):
            routes[key].mock(side_effect=delayed(prefetch[key]))
        response = app_client.post(SERVICE_URL, json=_request(without=("observations", "imagingStudies")))
    assert response.status_code == 200
    assert in_flight["max"] == 2


def test_a_failed_optional_search_does_not_discard_the_others(app_client: TestClient) -> None:
    with respx.mock(assert_all_called=False) as router:
        _serve_fixture(router)["medicationStatements"].mock(return_value=httpx.Response(400))
        response = app_client.post(SERVICE_URL, json=_request())
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "critical"


def test_without_ms_a_failed_observation_search_still_gives_no_card(app_client: TestClient) -> None:
    body = copy.deepcopy(load_fixture("no-card-back-pain-without-ms"))
    body["prefetch"] = {}
    body["fhirAuthorization"] = _request()["fhirAuthorization"]
    conditions = load_fixture("no-card-back-pain-without-ms")["prefetch"]["conditions"]
    with respx.mock(assert_all_called=False) as router:
        router.get(url__startswith=f"{BASE}/Condition?").mock(return_value=httpx.Response(200, json=conditions))
        router.route().mock(return_value=httpx.Response(503))
        response = app_client.post(SERVICE_URL, json=body)
    assert response.status_code == 200 and response.json() == {"cards": []}


# --- searches the server refuses, and OperationOutcome entries -------------------------------------

UNQUALIFIED = "Observation?patient=pv01-patient"
QUALIFIED = "Observation?patient=pv01-patient&category=survey,exam,vital-signs"


def _refusal(status: int, code: str = "required") -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "details": {"text": "category or code is required"}}],
        },
    )


def test_a_refused_unqualified_search_is_retried_with_the_category_and_sent_once(app_client: TestClient) -> None:
    full = app_client.post(SERVICE_URL, json=_request(without=()))
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        routes["allObservations"].mock(return_value=_refusal(400))
        response = app_client.post(SERVICE_URL, json=_request(without=("observations", "allObservations")))
    assert response.status_code == 200, response.text
    assert _strip_uuids(response.json()) == _strip_uuids(full.json())
    assert routes["allObservations"].call_count == 1
    assert routes["observations"].call_count == 1  # the retry is the other key's search: shared, not repeated


@pytest.mark.parametrize(
    ("answer", "retried"),
    [
        (_refusal(400), True),
        (_refusal(422, "invalid"), True),
        (_refusal(400, "not-supported"), False),  # the server does not offer this search at all
        (_refusal(403, "required"), True),  # a 403 that speaks of the search, not of the token
        (_refusal(403, "forbidden"), False),  # the token may not read this: asking again changes nothing
        (httpx.Response(403), False),
        (httpx.Response(400, text="bad request"), False),  # no OperationOutcome: no refusal to follow
        (httpx.Response(403, json={"resourceType": "OperationOutcome", "issue": [{"code": {"x": 1}}, 5]}), False),
        (httpx.Response(500, json={"resourceType": "OperationOutcome", "issue": []}), False),
    ],
)
def test_only_a_refusal_of_the_search_is_retried(app_client: TestClient, answer: httpx.Response, retried: bool) -> None:
    body = _request(without=())
    body["prefetch"]["allObservations"] = None  # the client's search failed: read from the server
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        routes["allObservations"].mock(return_value=answer)
        response = app_client.post(SERVICE_URL, json=body)
    assert response.status_code == 200, response.text  # optional either way: the card is served
    assert response.json()["cards"][0]["indicator"] == "critical"
    assert routes["observations"].call_count == (1 if retried else 0)


def test_a_refused_search_without_a_narrower_form_is_not_retried(app_client: TestClient) -> None:
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        routes["observations"].mock(return_value=_refusal(400))
        response = app_client.post(SERVICE_URL, json=_request(without=("observations",)))
    assert response.status_code == 412
    (detail,) = response.json()["details"]
    assert detail["prefetchKey"] == "observations" and "refused this search" in detail["reason"]
    assert routes["observations"].call_count == 1


def test_a_refused_retry_fails_the_key(app_client: TestClient) -> None:
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        routes["allObservations"].mock(return_value=_refusal(400))
        routes["observations"].mock(return_value=_refusal(400))
        response = app_client.post(SERVICE_URL, json=_request(without=("observations", "allObservations")))
    assert response.status_code == 412
    assert {d["prefetchKey"] for d in response.json()["details"]} == {"observations"}  # allObservations: optional


def test_outcome_entries_in_the_servers_searchsets_are_tolerated(
    app_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    full = app_client.post(SERVICE_URL, json=_request(without=()))
    prefetch = load_fixture(FIXTURE)["prefetch"]
    note = {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "informational", "diagnostics": "patient=pv01-patient"}],
        },
        "search": {"mode": "outcome"},
    }
    with respx.mock(assert_all_called=False) as router:
        routes = _serve_fixture(router)
        for key in ("conditions", "observations", "imagingStudies"):
            value = copy.deepcopy(prefetch[key])
            value["entry"] = [*value.get("entry", []), note]
            routes[key].mock(return_value=httpx.Response(200, json=value))
        with caplog.at_level("INFO"):
            response = app_client.post(SERVICE_URL, json=_request())
    assert response.status_code == 200, response.text
    assert _strip_uuids(response.json()) == _strip_uuids(full.json())
    assert any("OperationOutcome entries skipped" in r.getMessage() for r in caplog.records)
    assert "pv01-patient" not in "".join(
        r.getMessage() for r in caplog.records if r.name.startswith("cds_service.fhir")
    )
