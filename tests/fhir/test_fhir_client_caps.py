"""The FHIR client's caps apply within a page: a page larger than CDS_FHIR_MAX_PAGE_BYTES is cut off
while it streams (with or without Content-Length), and a single page with more entries than the
resource cap fails at once. The real-socket version (52 MB page, event-loop lag measured):
tests/system/test_dependency_faults.py."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import respx
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.services.patient_data import PREFETCH_POLICY
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture

BASE = "https://ehr.example.org/fhir"
FIXTURE = "urgent-new-paraparesis"


def _client(**settings: Any) -> TestClient:
    return TestClient(
        create_app(
            Settings(fhir_server_allowlist=[BASE], **settings),
            clock=lambda: NOW,
            auth=NO_AUTH,
        )
    )


def _request_without(key: str) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture(FIXTURE))
    body["fhirAuthorization"] = {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "s",
        "subject": "c",
    }
    for other in PREFETCH_POLICY.templates():  # every other key sent (empty): only `key` is read
        body["prefetch"].setdefault(other, {"resourceType": "Bundle", "type": "searchset", "entry": []})
    del body["prefetch"][key]
    return body


def _bundle(entries: int) -> bytes:
    entry = {"resource": {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x" * 100}}}
    return orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [entry] * entries})


def _reason(response: httpx.Response, key: str = "observations") -> str:
    return str(next(d["reason"] for d in response.json()["details"] if d["prefetchKey"] == key))


EMPTY = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def _metric(client: TestClient, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("cds_fhir_reads_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_page_over_the_byte_cap_is_refused_from_its_content_length() -> None:
    client = _client(fhir_max_page_bytes=100_000)
    before = _metric(client, "too_large")
    with respx.mock(assert_all_called=False) as router:
        router.get(url__startswith=f"{BASE}/Observation?").mock(
            return_value=httpx.Response(200, content=_bundle(2000), headers={"content-type": "application/fhir+json"})
        )
        router.get(url__startswith=BASE).mock(return_value=httpx.Response(200, json=EMPTY))  # any other search
        response = client.post(SERVICE_URL, json=_request_without("observations"))
    assert response.status_code == 412, response.text
    assert _reason(response).endswith("a FHIR answer page is larger than the service reads (100000 bytes)")
    assert _metric(client, "too_large") == before + 1


def test_a_page_without_content_length_is_cut_off_while_it_streams() -> None:
    client = _client(fhir_max_page_bytes=100_000)
    body = _bundle(20_000)  # ~3 MB
    sent = {"bytes": 0}

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 16_384):
            sent["bytes"] += 16_384
            yield body[start : start + 16_384]

    with respx.mock(assert_all_called=False) as router:
        router.get(url__startswith=f"{BASE}/Observation?").mock(
            side_effect=lambda request: httpx.Response(200, stream=_Stream(chunks()))
        )
        router.get(url__startswith=BASE).mock(return_value=httpx.Response(200, json=EMPTY))  # any other search
        response = client.post(SERVICE_URL, json=_request_without("observations"))
    assert response.status_code == 412, response.text
    assert "larger than the service reads" in _reason(response)
    assert sent["bytes"] < 200_000  # reading stopped at the cap, not at the end of the 3 MB page


class _Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self) -> Any:
        for chunk in self._chunks:
            yield chunk


def test_the_resource_cap_applies_within_one_page() -> None:
    client = _client(fhir_max_resources=500)
    with respx.mock(assert_all_called=False) as router:
        route = router.get(url__startswith=f"{BASE}/Observation?").mock(
            return_value=httpx.Response(200, content=_bundle(501), headers={"content-type": "application/fhir+json"})
        )
        router.get(url__startswith=BASE).mock(return_value=httpx.Response(200, json=EMPTY))  # any other search
        response = client.post(SERVICE_URL, json=_request_without("observations"))
    assert response.status_code == 412, response.text
    assert _reason(response).endswith("more results than the service reads (page or resource cap)")
    assert route.call_count == 1
