"""Dependency faults against the real service (`cds-service serve` in its own process) and real
dependencies of our own (tests/system/faults.py): a PostgreSQL cluster and a redis-server on their
own ports, frozen with SIGSTOP, thawed with SIGCONT, stopped and restarted. Also slow and idle
clients on real sockets, and a FHIR server that answers a huge page.

Every answer must come within a bound (generous here: the machine is shared) with the right status,
and the service must recover by itself once the dependency is back.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bench.soak import Service
from tests.conftest import NOW, SERVICE_URL, load_fixture
from tests.security.test_fault_statuses import BASE, ISS, KEY, signed_token
from tests.system.faults import OwnPostgres, OwnRedis

pytestmark = pytest.mark.slow

FEEDBACK_URL = SERVICE_URL + "/feedback"
BODY = load_fixture("urgent-new-paraparesis")
HASH_KEY = "fault-tests-patient-hash-key-0123456789"


def feedback(card_uuid: str) -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "not-relevant", "system": "https://example.org/reasons"}},
                "outcomeTimestamp": "2026-12-01T10:00:00Z",
            }
        ]
    }


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = call()
    seconds = time.perf_counter() - started
    # Shown with `pytest -s`: the figures of the closing note (what each fault answers, how fast).
    print(
        f"fault-timing: {response.request.method} {response.request.url.path} -> {response.status_code} in {seconds * 1000:.0f} ms"
    )
    return response, seconds


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


# --- PostgreSQL frozen or stopped ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    cluster = OwnPostgres.create()
    try:
        with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE cds_faults")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def service_on_postgres(own_postgres: OwnPostgres, tmp_path: Path) -> Iterator[Service]:
    env = {
        "CDS_DATABASE_URL": own_postgres.url("cds_faults"),
        "CDS_PATIENT_HASH_KEY": HASH_KEY,
        "CDS_DB_WRITE_TIMEOUT_SECONDS": "1",
        "CDS_DB_POOL_TIMEOUT_SECONDS": "1",
        "CDS_DB_RETRY_AFTER_SECONDS": "1",
        "CDS_LOG_LEVEL": "INFO",
    }
    service = Service.start(tmp_path, env)
    try:
        yield service
    finally:
        own_postgres.thaw()
        service.stop()


def _card_call(client: httpx.Client) -> tuple[httpx.Response, float]:
    return timed(lambda: client.post(SERVICE_URL, json=BODY))


def test_a_frozen_database_never_holds_a_card_and_the_service_recovers(
    own_postgres: OwnPostgres, service_on_postgres: Service
) -> None:
    with httpx.Client(base_url=service_on_postgres.base_url, timeout=30) as client:
        answer, _ = _card_call(client)
        assert answer.status_code == 200
        card_uuid = answer.json()["cards"][0]["uuid"]
        assert client.post(FEEDBACK_URL, json=feedback(card_uuid)).status_code == 200
        assert client.get("/readyz").json()["status"] == "ready"
        # The override is remembered: the same card is now shown as information (alert fatigue).
        assert _card_call(client)[0].json()["cards"][0]["indicator"] == "info"

        own_postgres.freeze()
        try:
            for _ in range(5):  # the first waits for the 150 ms read bound, the next skip the database
                answer, seconds = _card_call(client)
                # Served without the memory: the override cannot be read, so the card is critical again.
                assert answer.status_code == 200 and answer.json()["cards"][0]["indicator"] == "critical"
                assert seconds < 2.0, seconds
            ready, seconds = timed(lambda: client.get("/readyz"))
            assert ready.status_code == 200 and seconds < 3.0, (ready.text, seconds)
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["database"].startswith("unreachable")
            posted, seconds = timed(lambda: client.post(FEEDBACK_URL, json=feedback(card_uuid)))
            assert posted.status_code == 503 and posted.json()["error"] == "storage_unavailable"
            assert seconds < 5.0, seconds
            metrics = client.get("/metrics").text
            assert re.search(
                r'cds_storage_fallbacks_total\{reason="(timeout|recently_failed)",use="override_read"\}', metrics
            )
        finally:
            own_postgres.thaw()

        wait_for(lambda: client.get("/readyz").json()["status"] == "ready", 30, "ready again after SIGCONT")
        wait_for(
            lambda: client.post(FEEDBACK_URL, json=feedback(card_uuid)).status_code == 200, 30, "feedback stored again"
        )
        # The memory is back: the override quiets the card again.
        wait_for(lambda: _card_call(client)[0].json()["cards"][0]["indicator"] == "info", 15, "memory back")
    log = service_on_postgres.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_stopped_database_is_served_without_memory_and_reconnected_when_back(
    own_postgres: OwnPostgres, service_on_postgres: Service
) -> None:
    with httpx.Client(base_url=service_on_postgres.base_url, timeout=30) as client:
        assert _card_call(client)[0].status_code == 200
        own_postgres.stop()
        try:
            for _ in range(3):
                answer, seconds = _card_call(client)
                assert answer.status_code == 200 and answer.json()["cards"], answer.text
                assert seconds < 3.0, seconds
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        finally:
            own_postgres.start()
        wait_for(lambda: client.get("/readyz").json()["status"] == "ready", 30, "ready again after restart")
        assert _card_call(client)[0].status_code == 200
    assert "Traceback" not in service_on_postgres.log_path.read_text()


# --- Redis (the JWT replay cache) frozen or killed, with client authentication required --------------


@pytest.fixture
def service_with_redis(tmp_path: Path) -> Iterator[tuple[Service, OwnRedis]]:
    import jwt

    redis = OwnRedis.create()
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    jwk.update(kid="faults-1", use="sig", alg="ES384")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    env = {
        "CDS_AUTH_MODE": "required",
        "CDS_AUTH_TRUSTED_ISSUERS": json.dumps([{"iss": ISS, "jwks_file": str(tmp_path / "jwks.json")}]),
        "CDS_AUTH_PUBLIC_BASE_URL": BASE,
        "CDS_REDIS_URL": redis.url,
        "CDS_REDIS_TIMEOUT_SECONDS": "0.5",
        "CDS_PATIENT_HASH_KEY": HASH_KEY,
    }
    service = Service.start(tmp_path, env)
    try:
        yield service, redis
    finally:
        redis.kill()
        service.stop()


def _authenticated_call(client: httpx.Client) -> tuple[httpx.Response, float]:
    headers = {"Authorization": f"Bearer {signed_token()}"}
    return timed(lambda: client.post(SERVICE_URL, json=BODY, headers=headers))


def _assert_replay_store_unavailable(answer: httpx.Response, seconds: float) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "replay_store_unavailable"
    assert answer.headers["retry-after"] == "1"
    assert seconds < 3.0, seconds


def test_redis_frozen_or_down_is_503_with_retry_after_and_recovers(
    service_with_redis: tuple[Service, OwnRedis],
) -> None:
    service, redis = service_with_redis
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        assert _authenticated_call(client)[0].status_code == 200
        assert client.get("/readyz").json()["checks"]["replayCache"] == "ok"

        redis.freeze()
        try:
            _assert_replay_store_unavailable(*_authenticated_call(client))
            ready, seconds = timed(lambda: client.get("/readyz"))
            assert ready.status_code == 503 and seconds < 3.0
            assert ready.json()["checks"]["replayCache"].startswith("unreachable")
        finally:
            redis.thaw()
        wait_for(lambda: _authenticated_call(client)[0].status_code == 200, 20, "calls accepted after SIGCONT")

        redis.kill()
        _assert_replay_store_unavailable(*_authenticated_call(client))
        assert client.get("/readyz").status_code == 503
        redis.start()  # same port
        wait_for(lambda: _authenticated_call(client)[0].status_code == 200, 20, "calls accepted after restart")
        assert client.get("/readyz").status_code == 200
        assert 'cds_auth_refusals_total{reason="replay_store_unavailable",status="503"}' in client.get("/metrics").text
    assert "Traceback" not in service.log_path.read_text()


# --- slow and idle clients --------------------------------------------------------------------------


@pytest.fixture
def service_for_clients(tmp_path: Path) -> Iterator[Service]:
    env = {"CDS_BODY_READ_TIMEOUT_SECONDS": "1", "CDS_LOG_LEVEL": "INFO", "CDS_PATIENT_HASH_KEY": HASH_KEY}
    service = Service.start(tmp_path, env, extra_args=["--header-timeout-seconds", "1"])
    try:
        yield service
    finally:
        service.stop()


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_and_half_sent_requests_are_dropped_and_the_service_stays_reachable(service_for_clients: Service) -> None:
    port = service_for_clients.port
    body = json.dumps(BODY).encode()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    half_head = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for sock in half_head:
        sock.sendall(b"POST " + SERVICE_URL.encode() + b" HTTP/1.1\r\nHost: x\r\n")
    half_body = socket.create_connection(("127.0.0.1", port))
    half_body.sendall(
        b"POST " + SERVICE_URL.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:200]
    )
    try:
        # Served meanwhile, at once.
        answer, seconds = timed(lambda: httpx.post(service_for_clients.base_url + SERVICE_URL, json=BODY, timeout=10))
        assert answer.status_code == 200 and seconds < 2.0
        # The half-sent body: 408, then the connection is closed.
        half_body.settimeout(5)
        reply = b""
        while b"request_timeout" not in reply:
            chunk = half_body.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"connection: close" in reply.lower()
        assert _closed_by_server(half_body, 3)
        # Idle connections and incomplete heads are closed by the server after the header timeout.
        assert all(_closed_by_server(s, 5) for s in idle[:20] + half_head)
    finally:
        for sock in [*idle, *half_head, half_body]:
            sock.close()


def test_a_client_that_disconnects_mid_body_is_one_info_line(service_for_clients: Service) -> None:
    body = json.dumps(BODY).encode()
    with socket.create_connection(("127.0.0.1", service_for_clients.port)) as sock:
        sock.sendall(
            b"POST " + SERVICE_URL.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:500]
        )
        time.sleep(0.3)
    wait_for(
        lambda: "client disconnected before the answer" in service_for_clients.log_path.read_text(), 10, "the log line"
    )
    time.sleep(0.5)
    log = service_for_clients.log_path.read_text()
    assert log.count("client disconnected before the answer") == 1
    assert "Traceback" not in log and '"level":"ERROR"' not in log, log[-3000:]


def test_out_of_file_descriptors_is_summarised_not_a_traceback_flood(tmp_path: Path) -> None:
    env = {"CDS_LOG_LEVEL": "INFO", "CDS_PATIENT_HASH_KEY": HASH_KEY}
    service = Service.start(tmp_path, env, extra_args=["--header-timeout-seconds", "2"], max_open_files=128)
    sockets: list[socket.socket] = []
    try:
        try:
            for _ in range(250):  # more than the process can hold
                sockets.append(socket.create_connection(("127.0.0.1", service.port), timeout=5))
            wait_for(lambda: "accept() failing" in service.log_path.read_text(), 15, "the summarised accept() warning")
            time.sleep(2)
        finally:
            for sock in sockets:
                sock.close()
        # Once the idle connections are gone the service answers again.
        wait_for(
            lambda: httpx.post(service.base_url + SERVICE_URL, json=BODY, timeout=5).status_code == 200,
            20,
            "served again",
        )
        log = service.log_path.read_text()
        assert "Traceback" not in log and "out of system resource" not in log, log[-3000:]
        assert log.count("accept() failing") <= 3, log[-3000:]
    finally:
        service.stop()


# --- a FHIR server that answers a huge page -------------------------------------------------------------


class HugePageServer:
    """A plain HTTP/1.1 server on loopback that answers every GET with one `size`-byte FHIR Bundle."""

    def __init__(self, size: int):
        entry = json.dumps({"resource": {"resourceType": "Observation", "id": "x", "status": "final"}}).encode()
        count = size // (len(entry) + 1)
        self.body = b'{"resourceType":"Bundle","type":"searchset","entry":[' + b",".join([entry] * count) + b"]}"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode())  # no Content-Length: the size is known only by reading
                for start in range(0, len(self.body), 1 << 20):
                    conn.sendall(self.body[start : start + (1 << 20)])
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def test_a_huge_fhir_page_is_cut_off_at_the_byte_cap_within_the_deadline() -> None:
    from cds_service.app import create_app
    from cds_service.settings import Settings
    from tests.conftest import NO_AUTH

    server = HugePageServer(52 * 1024 * 1024)
    try:
        base = f"http://127.0.0.1:{server.port}/fhir"
        settings = Settings(fhir_server_allowlist=[base], fhir_deadline_seconds=1.5)
        app = create_app(settings, clock=lambda: NOW, auth=NO_AUTH)
        body = copy.deepcopy(BODY)
        body["fhirServer"] = base
        body["fhirAuthorization"] = {
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 60,
            "scope": "s",
            "subject": "c",
        }
        del body["prefetch"]["observations"]

        async def main() -> tuple[httpx.Response, float, float]:
            lags: list[float] = []
            done = asyncio.Event()

            async def ticker() -> None:  # how long the event loop is held at a time
                while not done.is_set():
                    before = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lags.append(time.perf_counter() - before - 0.01)

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cds.test", timeout=30) as client:
                tick = asyncio.create_task(ticker())
                started = time.perf_counter()
                answer = await client.post(SERVICE_URL, json=body)
                elapsed = time.perf_counter() - started
                done.set()
                await tick
            return answer, elapsed, max(lags)

        answer, elapsed, worst_lag = asyncio.run(main())
        assert answer.status_code == 412, answer.text
        reasons = [d["reason"] for d in answer.json()["details"]]
        assert any("larger than the service reads" in r or "did not answer within" in r for r in reasons), reasons
        assert elapsed < 3.0, elapsed  # 1.5 s deadline, generous for a shared machine
        assert worst_lag < 0.5, worst_lag
    finally:
        server.close()
