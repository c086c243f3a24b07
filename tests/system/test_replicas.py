"""Two replicas of the service, as real processes on loopback, sharing PostgreSQL and Redis.

Each replica is `python -m uvicorn tests.system.replica_app:app --port P`, configured by the environment
only: one PostgreSQL database made for this test session (migrated, then dropped at the end), one
Redis key prefix for this test session (its keys deleted at the end), the same trusted issuer (a JWK
Set file written here), the same public base URL (so both expect the same `aud`) and the same
patient-hash key. The clinical clock is pinned to the fixtures' date (CDS_TEST_NOW); token times
use the real clock.

What must hold across replicas: a client token is accepted once (replay), feedback posted to one
replica is tied to the card another issued, an override recorded through one quiets the card on the
other, concurrent posts store each entry exactly once, and stopping a replica (SIGTERM) mid-load
loses no acknowledged feedback.

Without a reachable PostgreSQL (CDS_TEST_POSTGRES_URL) or Redis (CDS_TEST_REDIS_URL) the tests are
skipped, except with CI=true (or, for PostgreSQL, CDS_TEST_REQUIRE_POSTGRES=1), where that is a failure. Every test runs under a deadline and stops
the processes it started.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.security.replay import InMemoryReplayCache
from cds_service.security.replay_shared import (
    DatabaseReplayCache,
    RedisReplayCache,
    ReplayStoreUnavailable,
    replay_cache_from_settings,
)
from cds_service.storage import StorageSettings, open_storage, upgrade_database
from cds_service.storage.db import sync_url
from tests.conftest import NOW, ROOT, SERVICE_URL, load_fixture
from tests.postgres import POSTGRES_ADMIN_URL, admin_connection, fresh_postgres_database

pytestmark = pytest.mark.slow  # multi-process / real-server: left out of the fast run (-m 'not slow')

REDIS_URL = os.environ.get("CDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

SERVICE_ID = "ms-back-pain-patient-view"
FEEDBACK_URL = SERVICE_URL + "/feedback"
PUBLIC_BASE_URL = "https://cds.example.org"
AUD = PUBLIC_BASE_URL + SERVICE_URL
ISS = "https://ehr-replicas.example.com/"
KID = "replicas-1"
KEY = ec.generate_private_key(ec.SECP384R1())
HASH_KEY = "replica-test-patient-hash-key-0123456789"
FIXTURE = "urgent-new-paraparesis"
PATIENT_ID = "pv01-patient"
UNAUTHORIZED = {"error": "unauthorized", "message": "Client authentication failed."}
SKEW_SECONDS = 60  # AuthSettings.clock_skew_seconds default

TEST_DEADLINE_SECONDS = 90.0  # each test's body
START_DEADLINE_SECONDS = 45.0  # a replica answering discovery
STOP_DEADLINE_SECONDS = 20.0  # a replica exiting after SIGTERM (its graceful timeout is 10 s)


# --- shared back-ends: one PostgreSQL database and one Redis key prefix per test session -----------


def _unavailable(message: str, required: bool = False) -> None:
    if required or os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the replica tests must run)")
    pytest.skip(message)


@dataclass
class Backends:
    database_url: str  # async URL, as the replicas get it
    engine: sa.Engine  # sync, for arranging and inspecting
    redis: redis.Redis
    key_prefix: str

    def clear(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text("TRUNCATE feedback, issued_cards, seen_jti"))
        keys = list(self.redis.scan_iter(match=self.key_prefix + "*", count=1000))
        if keys:
            self.redis.delete(*keys)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(sql), params)]

    def redis_keys(self) -> list[bytes]:
        return list(self.redis.scan_iter(match=self.key_prefix + "*", count=1000))


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    try:
        admin_connection().close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        # .ci/run also sets CDS_TEST_REQUIRE_POSTGRES=1 (as tests/postgres.py reads it).
        _unavailable(
            f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}",
            os.environ.get("CDS_TEST_REQUIRE_POSTGRES") == "1",
        )
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        client.close()
        _unavailable(f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}")

    token = uuid.uuid4().hex[:16]
    made = Backends("", None, client, f"cds-test-replicas:{token}:")  # type: ignore[arg-type]
    try:
        with fresh_postgres_database(f"cds_test_replicas_{token}") as url:
            upgrade_database(url)
            engine = sa.create_engine(sync_url(url))
            made.database_url, made.engine = url, engine
            try:
                yield made
            finally:
                engine.dispose()
    finally:
        keys = made.redis_keys()
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="session")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    jwk.update(kid=KID, use="sig", alg="ES384")
    path = tmp_path_factory.mktemp("replicas") / "ehr-jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


# --- replicas: real processes ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Replica:
    name: str
    env: dict[str, str]
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    terminated_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = _free_port()
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "tests.system.replica_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-access-log",
                    "--timeout-graceful-shutdown",
                    "10",
                    # Longer than the test client's keep-alive (5 s), as a server behind a load
                    # balancer is set up: else the server may close an idle connection just as the
                    # client reuses it, and that request fails without reaching the service.
                    "--timeout-keep-alive",
                    "75",
                ],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest does not hit it; we stop it ourselves
            )
        finally:
            log.close()

    def wait_ready(self, deadline: float) -> bool:
        """True once discovery answers; False if the process exited first (e.g. its port was taken)."""
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/cds-services", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica {self.name} did not start within {START_DEADLINE_SECONDS} s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a replica; uvicorn then finishes what is in flight."""
        # Once only: a second SIGTERM makes uvicorn quit at once, without finishing what is in flight.
        if self.process is not None and self.process.poll() is None and self.terminated_at is None:
            self.terminated_at = time.monotonic()
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """Stop it (SIGTERM, then SIGKILL after the deadline); its exit code (None if never started)."""
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(
                f"replica {self.name} ignored SIGTERM for {STOP_DEADLINE_SECONDS} s:\n{self.log_tail()}"
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def replica_env(backends: Backends, jwks_file: Path, replay: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}  # nothing inherited from the tests
    env.update(
        CDS_DATABASE_URL=backends.database_url,
        CDS_PATIENT_HASH_KEY=HASH_KEY,
        CDS_AUTH_MODE="required",
        CDS_AUTH_TRUSTED_ISSUERS=json.dumps([{"iss": ISS, "jwks_file": str(jwks_file)}]),
        CDS_AUTH_PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        CDS_TEST_NOW=NOW.isoformat(),
        CDS_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if replay == "redis":
        env.update(CDS_REDIS_URL=REDIS_URL, CDS_REDIS_KEY_PREFIX=backends.key_prefix)
    return env


def start_replicas(replicas: list[Replica]) -> None:
    """Start all at once (they migrate concurrently: serialised by the advisory lock) and wait."""
    for replica in replicas:
        replica.start()
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    for replica in replicas:
        for _ in range(3):  # a port taken between choosing it and binding it: try another one
            if replica.wait_ready(deadline):
                break
            replica.start()
        else:
            raise AssertionError(f"replica {replica.name} exited at start-up:\n{replica.log_tail()}")


@dataclass
class Cluster:
    a: Replica
    b: Replica
    db: Backends
    replay: str


@pytest.fixture
def cluster(request: pytest.FixtureRequest, backends: Backends, jwks_file: Path, tmp_path: Path) -> Iterator[Cluster]:
    replay = getattr(request, "param", "redis")
    backends.clear()
    env = replica_env(backends, jwks_file, replay)
    a, b = Replica("A", env, tmp_path / "replica-a.log"), Replica("B", env, tmp_path / "replica-b.log")
    try:
        start_replicas([a, b])
        yield Cluster(a, b, backends, replay)
    finally:
        errors = []
        for replica in (a, b):
            try:
                replica.stop()
            except AssertionError as exc:
                errors.append(str(exc))
            print(f"--- replica {replica.name} log (tail) ---\n{replica.log_tail()}")  # shown when a test fails
        assert not errors, errors


# --- calls ---------------------------------------------------------------------------------------------


def token(aud: str = AUD, lifetime: int = 300) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4()), "tenant": "org-1"}
    return jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def bearer(jwt_token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt_token or token()}"}


def stamp(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def overridden(card: str, at: dt.datetime) -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "system": "urn:ms-back-pain-cds:override-reason",
                "code": "already-evaluated",
                "display": "Already evaluated",
            },
            "userComment": "seen by neurology",
        },
        "outcomeTimestamp": stamp(at),
    }


def accepted(card: str, at: dt.datetime, suggestion: str) -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion}],
        "outcomeTimestamp": stamp(at),
    }


def run(body: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body under the per-test deadline."""

    async def bounded() -> None:
        await asyncio.wait_for(body(), TEST_DEADLINE_SECONDS)

    asyncio.run(bounded())


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for `check()` (a database read, run off the event loop) to hold: replicas record issued
    cards in the background, after the answer has gone."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def http_client(limit: int = 100) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(15.0),
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=5.0),
    )


async def patient_view(http: httpx.AsyncClient, replica: Replica, request: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(replica.url + SERVICE_URL, json=request, headers=bearer())
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    return card


async def post_feedback(http: httpx.AsyncClient, replica: Replica, *entries: dict[str, Any]) -> httpx.Response:
    # aud: the service URL (CDS Hooks); the replicas accept the feedback URL too.
    return await http.post(replica.url + FEEDBACK_URL, json={"feedback": list(entries)}, headers=bearer())


# --- (a) a token is accepted once across replicas --------------------------------------------------------


@pytest.mark.parametrize("cluster", ["redis", "database"], indirect=True)
def test_a_token_used_on_one_replica_is_refused_on_the_other(cluster: Cluster) -> None:
    request = load_fixture(FIXTURE)

    async def body() -> None:
        async with http_client() as http:
            first = token()
            assert (
                await http.post(cluster.a.url + SERVICE_URL, json=request, headers=bearer(first))
            ).status_code == 200
            replayed = await http.post(cluster.b.url + SERVICE_URL, json=request, headers=bearer(first))
            assert replayed.status_code == 401 and replayed.json() == UNAUTHORIZED
            assert replayed.headers["www-authenticate"] == "Bearer"
            again_on_a = await http.post(cluster.a.url + SERVICE_URL, json=request, headers=bearer(first))
            assert again_on_a.status_code == 401

            # The other way round, and on the feedback endpoint.
            second = token()
            feedback = {"feedback": [overridden(str(uuid.uuid4()), NOW)]}
            assert (
                await http.post(cluster.b.url + FEEDBACK_URL, json=feedback, headers=bearer(second))
            ).status_code == 200
            assert (
                await http.post(cluster.a.url + FEEDBACK_URL, json=feedback, headers=bearer(second))
            ).status_code == 401

            # One token sent 20 times at once, half to each replica: exactly one call gets through.
            raced = token()
            responses = await asyncio.gather(
                *(
                    http.post(replica.url + FEEDBACK_URL, json=feedback, headers=bearer(raced))
                    for replica in [cluster.a, cluster.b] * 10
                )
            )
            assert sorted(r.status_code for r in responses) == [200] + [401] * 19

            # A fresh token still works on both.
            assert (await http.post(cluster.b.url + SERVICE_URL, json=request, headers=bearer())).status_code == 200

    run(body)

    # The shared store holds the accepted tokens: Redis keys or seen_jti rows (and not the other).
    keys, rows = cluster.db.redis_keys(), cluster.db.scalar("SELECT count(*) FROM seen_jti")
    if cluster.replay == "redis":
        assert (len(keys), rows) == (4, 0)
        pttl = cluster.db.redis.pttl(keys[0])
        assert 0 < pttl <= (300 + SKEW_SECONDS) * 1000  # the token's exp plus the skew
    else:
        assert (len(keys), rows) == (0, 4)
        (row,) = cluster.db.rows("SELECT iss, expires_at FROM seen_jti ORDER BY expires_at DESC LIMIT 1")
        assert row["iss"] == ISS
        until = row["expires_at"] - dt.datetime.now(dt.UTC)
        assert dt.timedelta(seconds=300) < until <= dt.timedelta(seconds=300 + SKEW_SECONDS + 5)


# --- (b) feedback on one replica is tied to the card another issued ---------------------------------------


def test_b_feedback_posted_to_b_is_tied_to_the_card_a_issued(cluster: Cluster) -> None:
    db = cluster.db
    joined = (
        "SELECT i.card_uuid, i.service_id, i.patient_hash, i.level, i.indicator, f.outcome, f.accepted_suggestions,"
        " f.service_id AS feedback_service FROM issued_cards i JOIN feedback f ON f.card_uuid = i.card_uuid"
    )
    cards: list[dict[str, Any]] = []

    async def body() -> None:
        async with http_client() as http:
            card = await patient_view(http, cluster.a, load_fixture(FIXTURE))
            assert card["indicator"] == "critical"
            cards.append(card)
            suggestion = card["suggestions"][0]["uuid"]
            # Posted at once: it may reach B before A has recorded its card; they are tied all the same.
            response = await post_feedback(
                http, cluster.b, accepted(card["uuid"], NOW - dt.timedelta(minutes=5), suggestion)
            )
            assert response.status_code == 200 and response.json() == {}
            await eventually(
                lambda: len(db.rows(joined)) == 1, "the issued card and its feedback, joined on the card uuid"
            )

    run(body)
    (card,) = cards
    (row,) = db.rows(joined)
    assert row["card_uuid"] == card["uuid"]
    assert row["service_id"] == row["feedback_service"] == SERVICE_ID
    assert (row["level"], row["indicator"]) == ("urgent", "critical")
    assert row["outcome"] == "accepted"
    assert row["accepted_suggestions"] == [{"id": card["suggestions"][0]["uuid"]}]
    # Both replicas hash with the same key: the stored pseudonym is the one of this patient.
    assert row["patient_hash"] == hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert db.scalar("SELECT count(*) FROM issued_cards") == 1
    assert db.scalar("SELECT count(*) FROM feedback") == 1


# --- (c) an override through one replica quiets the card on the other -------------------------------------


def test_c_override_recorded_through_b_downgrades_the_card_on_a(cluster: Cluster) -> None:
    request = load_fixture(FIXTURE)

    def issued() -> int:
        return cluster.db.scalar("SELECT count(*) FROM issued_cards")

    async def body() -> None:
        async with http_client() as http:
            first = await patient_view(http, cluster.a, request)
            assert first["indicator"] == "critical"
            # A records the card just after answering; the clinician's override comes later than that.
            await eventually(lambda: issued() == 1, "replica A recorded the card it issued")
            response = await post_feedback(http, cluster.b, overridden(first["uuid"], NOW - dt.timedelta(hours=2)))
            assert response.status_code == 200, response.text

            on_a = await patient_view(http, cluster.a, request)
            assert on_a["indicator"] == "info"
            assert "overridden on 25 Nov 2026 (Already evaluated)" in on_a["detail"]
            assert on_a["summary"] == first["summary"]
            on_b = await patient_view(http, cluster.b, request)
            assert on_b["indicator"] == "info"
            await eventually(lambda: issued() == 3, "every card issued is recorded")

    run(body)
    assert cluster.db.scalar("SELECT count(*) FROM feedback WHERE outcome = 'overridden'") == 1


# --- (d) concurrent posts over both replicas: each entry stored exactly once ------------------------------


def test_d_200_concurrent_feedback_posts_over_both_replicas_leave_200_rows(cluster: Cluster) -> None:
    cards = [str(uuid.uuid4()) for _ in range(200)]
    start = NOW - dt.timedelta(hours=1)
    entries = [overridden(c, start + dt.timedelta(seconds=i)) for i, c in enumerate(cards)]

    async def body() -> None:
        async with http_client(limit=200) as http:
            replicas = [cluster.a, cluster.b]
            responses = await asyncio.gather(*(post_feedback(http, replicas[i % 2], e) for i, e in enumerate(entries)))
            assert [r.status_code for r in responses] == [200] * 200, {
                r.text for r in responses if r.status_code != 200
            }
            # A quarter of them sent again at once to the other replica: idempotent across replicas.
            again = await asyncio.gather(
                *(post_feedback(http, replicas[(i + 1) % 2], e) for i, e in enumerate(entries[:50]))
            )
            assert {r.status_code for r in again} == {200}

    run(body)
    assert cluster.db.scalar("SELECT count(*) FROM feedback") == 200
    assert {r["card_uuid"] for r in cluster.db.rows("SELECT card_uuid FROM feedback")} == set(cards)


# --- (e) a replica stopped mid-load loses no acknowledged feedback ------------------------------------------


@dataclass
class LoadRun:
    acked: dict[int, str] = field(default_factory=dict)  # entry -> replica that answered 200
    acked_by_b_after_sigterm: int = 0
    in_flight_b: int = 0
    in_flight_b_at_sigterm: int = -1
    failed_on_b: int = 0  # transport errors (connection refused / closed): retried on A
    other_statuses: list[int] = field(default_factory=list)


def test_e_stopping_a_replica_mid_load_loses_no_acknowledged_feedback(cluster: Cluster) -> None:
    total, workers_per_replica, stop_after = 600, 8, 150
    start = NOW - dt.timedelta(hours=3)
    cards = [str(uuid.uuid4()) for _ in range(total)]
    entries = [overridden(c, start + dt.timedelta(seconds=i)) for i, c in enumerate(cards)]
    load = LoadRun()

    async def body() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(total):
            queue.put_nowait(i)
        enough = asyncio.Event()

        async def worker(http: httpx.AsyncClient, preferred: Replica) -> None:
            target = preferred
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                while True:  # like a load balancer: a post that got no answer goes to the other replica
                    on_b = target is cluster.b
                    load.in_flight_b += on_b
                    try:
                        response = await post_feedback(http, target, entries[i])
                    except httpx.TransportError:
                        assert on_b, "replica A must stay up"
                        load.failed_on_b += 1
                        target = cluster.a
                        continue
                    finally:
                        load.in_flight_b -= on_b
                    if response.status_code == 200:
                        load.acked[i] = target.name
                        if on_b and cluster.b.terminated_at is not None:
                            load.acked_by_b_after_sigterm += 1
                        if len(load.acked) >= stop_after:
                            enough.set()
                        break
                    load.other_statuses.append(response.status_code)
                    assert on_b, f"replica A answered {response.status_code}: {response.text}"
                    target = cluster.a

        async def stop_b() -> None:
            await enough.wait()
            load.in_flight_b_at_sigterm = load.in_flight_b
            cluster.b.terminate()

        async with http_client(limit=50) as http:
            stopper = asyncio.create_task(stop_b())
            await asyncio.gather(
                *(worker(http, cluster.a) for _ in range(workers_per_replica)),
                *(worker(http, cluster.b) for _ in range(workers_per_replica)),
            )
            assert stopper.done(), "the load run ended before replica B was stopped"

    run(body)
    exit_code = cluster.b.stop()
    print(
        f"load run: acked={len(load.acked)} by_b={sum(1 for r in load.acked.values() if r == 'B')} "
        f"in_flight_b_at_sigterm={load.in_flight_b_at_sigterm} acked_by_b_after_sigterm={load.acked_by_b_after_sigterm} "
        f"failed_on_b={load.failed_on_b} other_statuses={load.other_statuses}"
    )
    # uvicorn re-raises the SIGTERM after its graceful shutdown: exit status "killed by SIGTERM" (or 0).
    assert exit_code in (0, -signal.SIGTERM), f"replica B exited with {exit_code}:\n{cluster.b.log_tail()}"
    assert "Application shutdown complete." in cluster.b.log_path.read_text(), cluster.b.log_tail()
    assert load.in_flight_b_at_sigterm > 0, "SIGTERM should reach B while it has posts in flight"
    assert "B" in load.acked.values() and "A" in load.acked.values()

    stored = {r["card_uuid"] for r in cluster.db.rows("SELECT card_uuid FROM feedback")}
    lost = [cards[i] for i in load.acked if cards[i] not in stored]
    assert not lost, f"{len(lost)} acknowledged posts are not in the database"
    # Every entry was acknowledged in the end (retried on A), and stored once however often it was sent.
    assert len(load.acked) == total
    assert cluster.db.scalar("SELECT count(*) FROM feedback") == total


# --- the shared replay caches themselves, several clients on the same store -------------------------------


def test_redis_replay_cache_first_use_wins_across_clients(backends: Backends) -> None:
    backends.clear()

    async def body() -> None:
        caches = [RedisReplayCache(REDIS_URL, backends.key_prefix) for _ in range(4)]  # four connection pools
        try:
            jti, expires = str(uuid.uuid4()), time.time() + 120
            results = await asyncio.gather(*(caches[i % 4].first_use(jti, ISS, expires) for i in range(100)))
            assert sum(results) == 1
            assert await caches[0].first_use(jti, "https://another-issuer.example/", expires)  # per issuer
            assert 110_000 < backends.redis.pttl(caches[0].key(ISS, jti)) <= 120_000
            # An already-expired token is kept a moment, never with a zero or negative expiry.
            assert await caches[1].first_use(str(uuid.uuid4()), ISS, time.time() - 5)
        finally:
            for cache in caches:
                await cache.aclose()

    run(body)
    assert all(key.startswith(backends.key_prefix.encode()) for key in backends.redis_keys())


def test_database_replay_cache_first_use_wins_across_engines_and_cleans_up(backends: Backends) -> None:
    backends.clear()
    clock = [time.time()]

    async def body() -> None:
        settings = StorageSettings(
            database_url=backends.database_url, patient_hash_key=HASH_KEY, migrate_on_startup=False
        )
        storages = [await open_storage(settings) for _ in range(2)]  # two engines: two replicas' pools
        try:
            caches = [
                DatabaseReplayCache(lambda s=s: s, clock=lambda: clock[0], cleanup_interval_seconds=60)
                for s in storages
            ]
            jti = str(uuid.uuid4())
            results = await asyncio.gather(*(caches[i % 2].first_use(jti, ISS, clock[0] + 60) for i in range(60)))
            assert sum(results) == 1
            # Once its row has expired, the id is free again (as a Redis key would have vanished).
            short = str(uuid.uuid4())
            assert await caches[0].first_use(short, ISS, clock[0] + 10)
            assert not await caches[1].first_use(short, ISS, clock[0] + 100)
            clock[0] += 11
            assert await caches[1].first_use(short, ISS, clock[0] + 100)
            assert not await caches[0].first_use(short, ISS, clock[0] + 100)
            # Expired rows are deleted at most once per interval per process.
            for _ in range(5):
                await caches[0].first_use(str(uuid.uuid4()), ISS, clock[0] + 30)
            assert backends.scalar("SELECT count(*) FROM seen_jti") == 7
            clock[0] += 50  # the first jti and the 5 rows have expired; cache 0's interval has passed
            await caches[0].first_use(str(uuid.uuid4()), ISS, clock[0] + 30)
            assert backends.scalar("SELECT count(*) FROM seen_jti") == 2  # `short` and the newest
            # Before start-up (or after shutdown) there is no storage: refused, never "first use".
            with pytest.raises(ReplayStoreUnavailable):
                await DatabaseReplayCache(lambda: None).first_use(str(uuid.uuid4()), ISS, clock[0] + 30)
        finally:
            for storage in storages:
                await storage.close()

    run(body)


def test_replay_cache_from_settings_prefers_redis_then_the_database_then_memory() -> None:
    async def body() -> None:
        redis_cache = replay_cache_from_settings(REDIS_URL, lambda: None, key_prefix="p:")
        assert isinstance(redis_cache, RedisReplayCache) and redis_cache.key("i", "j").startswith("p:")
        await redis_cache.aclose()
        assert isinstance(replay_cache_from_settings(None, lambda: None), DatabaseReplayCache)
        assert isinstance(replay_cache_from_settings("", lambda: None), DatabaseReplayCache)
        assert isinstance(replay_cache_from_settings(None, None), InMemoryReplayCache)

    run(body)
