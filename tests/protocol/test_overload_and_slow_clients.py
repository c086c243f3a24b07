"""Overload and slow clients, in-process: load shedding (503 + Retry-After at once above the limit),
the body-read deadline (408, connection closed) and a client that disconnects mid-body (one INFO
line, no traceback). The same over real sockets, with uvicorn: tests/system/test_dependency_faults.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
import pytest

from cds_service.app import create_app
from cds_service.protocol.load_shedding import LoadShedding
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture

FIXTURE = "urgent-new-paraparesis"


class HeldFetcher:
    """A FHIR fetcher that holds every call until released: calls stay in flight as long as a test wants."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def fetch(
        self,
        queries: Mapping[str, str],
        fhir_server: str | None,
        access_token: str | None,
        when_refused: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        self.waiting += 1
        await self.release.wait()
        return {key: {"resourceType": "Bundle", "type": "searchset", "entry": []} for key in queries}


def _request_missing_observations() -> dict[str, Any]:
    body = copy.deepcopy(load_fixture(FIXTURE))
    del body["prefetch"]["observations"]  # needed once MS is found: read through the fetcher
    return body


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_above_the_in_flight_limit_hook_calls_get_503_with_retry_after_at_once() -> None:
    async def main() -> None:
        fetcher = HeldFetcher()
        app = create_app(
            Settings(max_in_flight_calls=2),
            clock=lambda: NOW,
            fetcher=fetcher,
            auth=NO_AUTH,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cds.test", timeout=10) as client:
            body = _request_missing_observations()
            held = [asyncio.create_task(client.post(SERVICE_URL, json=body)) for _ in range(2)]
            await _until(lambda: fetcher.waiting == 2)

            started = time.perf_counter()
            shed = await client.post(SERVICE_URL, json=body)
            elapsed = time.perf_counter() - started
            assert shed.status_code == 503, shed.text
            assert shed.headers["retry-after"] == "1"
            assert shed.json() == {
                "error": "overloaded",
                "message": "The service has too many calls in progress; send the call again shortly.",
            }
            assert elapsed < 1.0  # answered at once, not queued
            # Not shed: discovery, health, readiness, metrics, and feedback (which is not a hook call).
            assert (await client.get("/cds-services")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'cds_shed_total{kind="hook"}' in metrics
            feedback = await client.post(SERVICE_URL + "/feedback", json={"feedback": []})
            assert feedback.json().get("error") != "overloaded"

            fetcher.release.set()
            answers = await asyncio.gather(*held)
            assert [a.status_code for a in answers] == [200, 200]
            assert answers[0].json()["cards"][0]["indicator"] == "critical"
            # The places are given back: the next call is served.
            assert (await client.post(SERVICE_URL, json=load_fixture(FIXTURE))).status_code == 200

    asyncio.run(main())


def test_load_shedding_counts_only_hook_calls() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    shedding = LoadShedding(app, max_in_flight=1)
    shedding.in_flight = 1  # full
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call(path: str, method: str = "POST") -> int | None:
        sent.clear()
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        try:
            await shedding(scope, None, send)  # type: ignore[arg-type]
        except AssertionError:
            return None  # passed on to the app
        return int(sent[0]["status"])

    async def main() -> None:
        assert await call("/cds-services/ms-back-pain-patient-view") == 503
        assert await call("/cds-services/ms-back-pain-patient-view/") == 503
        assert await call("/cds-services/ms-back-pain-patient-view/feedback") is None
        assert await call("/cds-services") is None
        assert await call("/cds-services/ms-back-pain-patient-view", method="OPTIONS") is None
        assert await call("/readyz", method="GET") is None

    asyncio.run(main())


async def _call_asgi(app: Any, chunks: list[dict[str, Any]], then: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Call `app` as uvicorn would, with the body `chunks`; after them `then` is "hang" (the client
    sends nothing more) or "disconnect"."""
    sent: list[dict[str, Any]] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then == "disconnect":
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # a client that never sends the rest
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": SERVICE_URL,
        "raw_path": SERVICE_URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"cds.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), timeout)
    return sent


def test_a_body_not_finished_in_time_gets_408_and_the_connection_closed(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(body_read_timeout_seconds=0.3), clock=lambda: NOW, auth=NO_AUTH)
    body = orjson.dumps(load_fixture(FIXTURE))
    started = time.perf_counter()
    with caplog.at_level(logging.INFO):
        sent = asyncio.run(_call_asgi(app, [{"type": "http.request", "body": body[:100], "more_body": True}], "hang"))
    elapsed = time.perf_counter() - started
    assert 0.25 < elapsed < 3.0
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    body_sent = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert orjson.loads(body_sent) == {
        "error": "request_timeout",
        "message": "The request body was not received in time.",
    }
    assert [m for m in sent if m["type"] == "http.response.start"] == [start]  # nothing else was answered
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


def test_a_client_that_disconnects_mid_body_is_one_info_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(), clock=lambda: NOW, auth=NO_AUTH)
    body = orjson.dumps(load_fixture(FIXTURE))
    caplog.clear()  # start-up lines
    with caplog.at_level(logging.DEBUG):
        asyncio.run(_call_asgi(app, [{"type": "http.request", "body": body[:100], "more_body": True}], "disconnect"))
    records = [r for r in caplog.records if r.name.startswith("cds_service") or r.levelno >= logging.WARNING]
    assert [(r.levelname, r.getMessage()) for r in records] == [("INFO", "client disconnected before the answer")]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_body_sent_in_time_is_not_affected() -> None:
    app = create_app(Settings(body_read_timeout_seconds=5), clock=lambda: NOW, auth=NO_AUTH)
    body = orjson.dumps(load_fixture(FIXTURE))
    chunks = [
        {"type": "http.request", "body": body[:1000], "more_body": True},
        {"type": "http.request", "body": body[1000:], "more_body": False},
    ]
    sent = asyncio.run(_call_asgi(app, chunks, "hang"))
    assert next(m for m in sent if m["type"] == "http.response.start")["status"] == 200
    answer = orjson.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert answer["cards"][0]["indicator"] == "critical"
