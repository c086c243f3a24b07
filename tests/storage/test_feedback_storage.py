"""Feedback persistence (CDS Hooks 2.0 "Feedback"), on SQLite and on PostgreSQL.

Each backend gets a database of its own for the test session: a temporary SQLite file, and a
PostgreSQL database `cds_test_feedback_<random>` created on the local server (CDS_TEST_POSTGRES_URL,
default postgresql://postgres@127.0.0.1:5432/test) and dropped at the end. Without a reachable
server the PostgreSQL tests are skipped, unless CDS_TEST_REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from cds_service.app import create_app
from cds_service.runtime import runtime_of
from cds_service.settings import Settings
from cds_service.storage import (
    CardRecord,
    FeedbackRecord,
    FeedbackResult,
    RedFlagRef,
    Storage,
    StorageSettings,
    recent_override,
    record_feedback,
    record_issued_cards,
    upgrade_database,
)
from cds_service.storage.db import sync_url
from cds_service.storage.migrations import downgrade_database
from cds_service.storage.models import Base, Feedback, IssuedCard
from cds_service.storage.repository import _RECENT_OVERRIDE
from tests.conftest import NO_AUTH, NOW, load_fixture

SERVICE_ID = "ms-back-pain-patient-view"
FEEDBACK_URL = f"/cds-services/{SERVICE_ID}/feedback"
SERVICE_PATH = f"/cds-services/{SERVICE_ID}"
HASH_KEY = "test-patient-hash-key-0123456789abcdef"
PATIENT_ID = "pt-feedback-7f3a9c"  # distinctive, so a leak anywhere is found by a plain search
POSTGRES_ADMIN_URL = os.environ.get("CDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- databases: one fresh database per backend and test session, dropped at the end -------------


class Databases:
    """Makes empty databases and removes every one it made."""

    def __init__(self, tmp: Path):
        self._tmp = tmp
        self._postgres: list[str] = []
        self._postgres_error: str | None = None
        self._postgres_checked = False

    def _admin(self) -> Any:
        import psycopg

        conninfo = sync_url(POSTGRES_ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)

    def _require_postgres(self) -> None:
        if not self._postgres_checked:
            self._postgres_checked = True
            try:
                self._admin().close()
            except Exception as exc:  # noqa: BLE001 - any failure means "no server"
                self._postgres_error = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"
        if self._postgres_error:
            if os.environ.get("CDS_TEST_REQUIRE_POSTGRES") == "1":
                pytest.fail(self._postgres_error)
            pytest.skip(self._postgres_error)

    def new(self, backend: str) -> str:
        """An empty database's async URL."""
        name = f"cds_test_feedback_{uuid.uuid4().hex[:16]}"
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self._tmp / (name + '.db')}"
        self._require_postgres()
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self._postgres.append(name)
        return sync_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self._postgres:
            return
        with self._admin() as admin:
            for name in self._postgres:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._postgres.clear()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    made = Databases(tmp_path_factory.mktemp("feedback-db"))
    try:
        yield made
    finally:
        made.drop_all()


@dataclass
class Database:
    backend: str
    url: str
    engine: sa.Engine  # sync, for arranging and inspecting

    def clear(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(Feedback.__table__))
            connection.execute(sa.delete(IssuedCard.__table__))

    def rows(self, model: type[Base]) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(model.__table__))]

    def count(self, model: type[Base]) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()


@pytest.fixture(scope="session", params=BACKENDS)
def database(request: pytest.FixtureRequest, databases: Databases) -> Iterator[Database]:
    url = databases.new(request.param)
    upgrade_database(url)
    engine = sa.create_engine(sync_url(url))
    try:
        yield Database(request.param, url, engine)
    finally:
        engine.dispose()


# --- the app under test: create_app() + storage + feedback routes ---------------------------------


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    storage: Storage
    db: Database

    async def post(self, body: Any, url: str = FEEDBACK_URL) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return await self.client.post(url, content=body, headers={"content-type": "application/json"})
        return await self.client.post(url, json=body)


def storage_settings(url: str) -> StorageSettings:
    return StorageSettings(database_url=url, patient_hash_key=HASH_KEY)


@pytest.fixture
async def service(database: Database) -> AsyncIterator[Service]:
    database.clear()
    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage_settings(database.url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cds.test") as client:
            yield Service(app, client, runtime_of(app).storage, database)
    assert runtime_of(app).storage is None  # disposed at shutdown


def card_record(
    card_uuid: str | None = None, patient_id: str = PATIENT_ID, service_id: str = SERVICE_ID, **changes: Any
) -> CardRecord:
    values: dict[str, Any] = dict(
        card_uuid=card_uuid or str(uuid.uuid4()),
        service_id=service_id,
        hook_instance=str(uuid.uuid4()),
        patient_id=patient_id,
        indicator="critical",
        level="urgent",
        red_flag_refs=[
            RedFlagRef("Condition/pv01-paraparesis", "weakness", dt.date(2026, 11, 10)),
            RedFlagRef("Observation/pv01-bladder", "bladder", None),
        ],
        issued_at=NOW - dt.timedelta(days=12),
    )
    values.update(changes)
    return CardRecord(**values)


def overridden(card: str, at: dt.datetime | str, **extra: Any) -> dict[str, Any]:
    stamp = at if isinstance(at, str) else at.isoformat().replace("+00:00", "Z")
    return {"card": card, "outcome": "overridden", "outcomeTimestamp": stamp, **extra}


def accepted(
    card: str, at: dt.datetime | str, suggestion: str = "e56e1945-20b3-4393-8503-a1a20fd73152"
) -> dict[str, Any]:
    stamp = at if isinstance(at, str) else at.isoformat().replace("+00:00", "Z")
    return {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion}], "outcomeTimestamp": stamp}


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {}


def all_stored_text(db: Database) -> str:
    """Every value of every row of every table (alembic's too), as text."""
    names = sa.inspect(db.engine).get_table_names()
    with db.engine.connect() as connection:
        return "\n".join(
            repr(tuple(row)) for name in names for row in connection.execute(sa.text(f'SELECT * FROM "{name}"'))
        )


# --- migrations ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_build_the_schema_on_an_empty_database(backend: str, databases: Databases) -> None:
    url = databases.new(backend)
    upgrade_database(url)
    upgrade_database(url)  # a second run is a no-op
    engine = sa.create_engine(sync_url(url))
    try:
        inspector = sa.inspect(engine)
        assert {"issued_cards", "feedback", "alembic_version"} <= set(inspector.get_table_names())
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("feedback")}
        assert ("card_uuid", "service_id", "outcome", "outcome_timestamp") in uniques
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
            # The revision and models.py describe the same schema.
            assert (
                compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
                == []
            )
        engine.dispose()
        downgrade_database(url)
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade_database(url)
        assert {"issued_cards", "feedback"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- the round trip ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_accepted_and_overridden(service: Service) -> None:
    card = card_record()
    assert await record_issued_cards(service.storage, [card]) == 1
    assert await record_issued_cards(service.storage, [card]) == 0  # recording twice is harmless

    body = {
        "feedback": [
            accepted(card.card_uuid, "2026-11-20T10:05:31Z"),
            overridden(
                card.card_uuid,
                "2026-11-20T11:00:00.250+01:00",
                overrideReason={
                    "reason": {
                        "code": "already-evaluated",
                        "system": "urn:ms-back-pain-cds:override-reason",
                        "display": "Already evaluated",
                    },
                    "userComment": "Seen by neurology last week.",
                    "vendorExtension": {"x": 1},
                },
                vendorField=True,
            ),
        ]
    }
    assert_ok(await service.post(body))

    (issued,) = service.db.rows(IssuedCard)
    assert issued["card_uuid"] == card.card_uuid
    assert issued["service_id"] == SERVICE_ID and issued["hook_instance"] == card.hook_instance
    assert issued["patient_hash"] == hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert (issued["indicator"], issued["level"]) == ("critical", "urgent")
    assert issued["red_flag_refs"] == [
        {"reference": "Condition/pv01-paraparesis", "concept": "weakness", "date": "2026-11-10"},
        {"reference": "Observation/pv01-bladder", "concept": "bladder", "date": None},
    ]
    assert issued["issued_at"] == NOW - dt.timedelta(days=12)

    rows = {row["outcome"]: row for row in service.db.rows(Feedback)}
    assert set(rows) == {"accepted", "overridden"}
    accept, override = rows["accepted"], rows["overridden"]
    assert accept["card_uuid"] == override["card_uuid"] == card.card_uuid
    assert accept["service_id"] == override["service_id"] == SERVICE_ID
    assert accept["accepted_suggestions"] == [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}]
    assert accept["override_reason"] is None and accept["user_comment"] is None
    assert accept["outcome_timestamp"] == dt.datetime(2026, 11, 20, 10, 5, 31, tzinfo=dt.UTC)
    assert override["accepted_suggestions"] is None
    assert override["override_reason"] == {
        "system": "urn:ms-back-pain-cds:override-reason",
        "code": "already-evaluated",
        "display": "Already evaluated",
    }
    assert override["user_comment"] == "Seen by neurology last week."
    assert override["outcome_timestamp"] == dt.datetime(2026, 11, 20, 10, 0, 0, 250000, tzinfo=dt.UTC)
    for row in (accept, override):
        received = row["received_at"]
        assert received.tzinfo is not None and abs(dt.datetime.now(dt.UTC) - received) < dt.timedelta(minutes=5)

    # The patient id is nowhere in clear: not in any column of any table...
    stored = all_stored_text(service.db)
    assert card.card_uuid in stored  # (the search does see the data)
    assert PATIENT_ID not in stored
    # ...nor anywhere in the SQLite files themselves (main file and write-ahead log).
    if service.db.backend == "sqlite":
        path = Path(sa.make_url(service.db.url).database or "")
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                assert PATIENT_ID.encode() not in file.read_bytes()


@pytest.mark.anyio
async def test_override_without_reason_and_reason_with_only_a_comment(service: Service) -> None:
    card = str(uuid.uuid4())
    assert_ok(await service.post({"feedback": [overridden(card, "2026-11-20T10:00:00Z")]}))
    assert_ok(
        await service.post(
            {"feedback": [overridden(card, "2026-11-21T10:00:00Z", overrideReason={"userComment": "Not now"})]}
        )
    )
    rows = sorted(service.db.rows(Feedback), key=lambda r: r["outcome_timestamp"])
    assert [(r["override_reason"], r["user_comment"]) for r in rows] == [(None, None), (None, "Not now")]


@pytest.mark.anyio
async def test_feedback_on_an_unknown_card_is_stored(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cds_service.feedback"):
        assert_ok(await service.post({"feedback": [overridden("never-issued-card", "2026-11-20T10:00:00Z")]}))
    (row,) = service.db.rows(Feedback)
    assert row["card_uuid"] == "never-issued-card"
    assert [r.__dict__["unknown_cards"] for r in caplog.records if r.__dict__.get("event") == "feedback"] == [1]
    assert await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW) is None


# --- idempotency and concurrency -------------------------------------------------------------------


@pytest.mark.anyio
async def test_resubmitted_feedback_is_stored_once(service: Service) -> None:
    card = str(uuid.uuid4())
    item = overridden(
        card, "2026-11-20T10:00:00Z", overrideReason={"reason": {"code": "patient-declined", "system": "urn:x"}}
    )
    for _ in range(3):
        assert_ok(await service.post({"feedback": [item]}))
    # The same instant written another way, and the same entry twice in one request.
    same_instant = overridden(card, "2026-11-20T11:00:00.000+01:00")
    assert_ok(await service.post({"feedback": [same_instant, same_instant]}))
    assert service.db.count(Feedback) == 1
    # A different outcome, or a later override of the same card, is new feedback.
    assert_ok(
        await service.post(
            {"feedback": [accepted(card, "2026-11-20T10:00:00Z"), overridden(card, "2026-11-20T10:00:01Z")]}
        )
    )
    assert service.db.count(Feedback) == 3


@pytest.mark.anyio
async def test_record_feedback_reports_what_it_stored(service: Service) -> None:
    card = card_record()
    await record_issued_cards(service.storage, [card])
    at = NOW - dt.timedelta(hours=1)
    items = [FeedbackRecord(card.card_uuid, "overridden", at), FeedbackRecord("unknown-card", "overridden", at)]
    first = await record_feedback(service.storage, SERVICE_ID, items + items[:1])
    assert first == FeedbackResult(received=3, stored=2, duplicates=1, unknown_cards=1)
    again = await record_feedback(service.storage, SERVICE_ID, items)
    assert again == FeedbackResult(received=2, stored=0, duplicates=2, unknown_cards=1)
    assert await record_feedback(service.storage, SERVICE_ID, []) == FeedbackResult(0, 0, 0, 0)


@pytest.mark.anyio
async def test_200_concurrent_posts_lose_nothing(service: Service) -> None:
    cards = [str(uuid.uuid4()) for _ in range(200)]
    start = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    bodies = [
        {
            "feedback": [
                accepted(c, start + dt.timedelta(seconds=i))
                if i % 2
                else overridden(c, start + dt.timedelta(seconds=i))
            ]
        }
        for i, c in enumerate(cards)
    ]
    responses = await asyncio.gather(*(service.post(body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * 200, {r.text for r in responses if r.status_code != 200}
    assert service.db.count(Feedback) == 200
    assert {row["card_uuid"] for row in service.db.rows(Feedback)} == set(cards)


@pytest.mark.anyio
async def test_concurrent_resubmissions_store_one_row(service: Service) -> None:
    body = {"feedback": [overridden(str(uuid.uuid4()), "2026-11-20T10:00:00Z")]}
    responses = await asyncio.gather(*(service.post(body) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert service.db.count(Feedback) == 1


# --- bad requests ------------------------------------------------------------------------------------

GOOD = overridden("4e0a3a1e-3283-4575-ab82-028d55fe2719", "2026-11-20T10:00:00Z")

INVALID_BODIES: dict[str, tuple[Any, str]] = {
    "not-json": (b"{feedback: ", "invalid_json"),
    "empty": (b"", "invalid_json"),
    "array": ([GOOD], "invalid_request"),
    "no-feedback": ({"cards": []}, "invalid_request"),
    "feedback-not-a-list": ({"feedback": GOOD}, "invalid_request"),
    "no-card": ({"feedback": [{k: v for k, v in GOOD.items() if k != "card"}]}, "invalid_request"),
    "empty-card": ({"feedback": [{**GOOD, "card": ""}]}, "invalid_request"),
    "unknown-outcome": ({"feedback": [{**GOOD, "outcome": "ignored"}]}, "invalid_request"),
    "no-timestamp": ({"feedback": [{k: v for k, v in GOOD.items() if k != "outcomeTimestamp"}]}, "invalid_request"),
    "date-only-timestamp": ({"feedback": [{**GOOD, "outcomeTimestamp": "2026-11-20"}]}, "invalid_request"),
    "numeric-timestamp": ({"feedback": [{**GOOD, "outcomeTimestamp": 1795000000}]}, "invalid_request"),
    "bad-timestamp": ({"feedback": [{**GOOD, "outcomeTimestamp": "yesterday"}]}, "invalid_request"),
    "accepted-without-suggestions": ({"feedback": [{**GOOD, "outcome": "accepted"}]}, "invalid_request"),
    "suggestion-without-id": (
        {"feedback": [{**accepted("c", "2026-11-20T10:00:00Z"), "acceptedSuggestions": [{}]}]},
        "invalid_request",
    ),
    "overridden-with-suggestions": ({"feedback": [{**GOOD, "acceptedSuggestions": [{"id": "s"}]}]}, "invalid_request"),
    "reason-without-code": (
        {"feedback": [{**GOOD, "overrideReason": {"reason": {"system": "urn:x"}}}]},
        "invalid_request",
    ),
    "one-bad-entry-of-two": ({"feedback": [GOOD, {**GOOD, "outcome": "maybe"}]}, "invalid_request"),
    "too-many-entries": ({"feedback": [GOOD] * 1001}, "invalid_request"),
    "too-deep": (b'{"feedback": [], "x": ' + b"[" * 80 + b"]" * 80 + b"}", "too_deeply_nested"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(INVALID_BODIES))
async def test_invalid_bodies_are_400_json_and_store_nothing(service: Service, case: str) -> None:
    body, code = INVALID_BODIES[case]
    response = await service.post(body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["error"] == code and answer["message"]
    assert "4e0a3a1e" not in response.text  # input values are not echoed
    assert service.db.count(Feedback) == 0


@pytest.mark.anyio
async def test_body_over_the_feedback_limit_is_413(service: Service) -> None:
    response = await service.post({"feedback": [{**GOOD, "pad": "x" * (1024 * 1024)}]})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


@pytest.mark.anyio
async def test_unknown_service_is_404(service: Service) -> None:
    response = await service.post({"feedback": [GOOD]}, url="/cds-services/no-such-service/feedback")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_service"
    assert service.db.count(Feedback) == 0


@pytest.mark.anyio
async def test_database_failure_is_503_and_can_be_retried(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    import cds_service.feedback.routes as routes

    real = routes.record_feedback

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("database down"))

    monkeypatch.setattr(routes, "record_feedback", failing)
    response = await service.post({"feedback": [GOOD]})
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    assert "database down" not in response.text
    monkeypatch.setattr(routes, "record_feedback", real)
    assert_ok(await service.post({"feedback": [GOOD]}))
    assert service.db.count(Feedback) == 1


@pytest.mark.anyio
async def test_feedback_endpoint_answers_only_post(service: Service) -> None:
    response = await service.client.get(FEEDBACK_URL)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


# --- override memory -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_recent_override_within_the_window_and_not_outside(service: Service) -> None:
    storage, window = service.storage, dt.timedelta(days=30)
    older = card_record(issued_at=NOW - dt.timedelta(days=20))
    newer = card_record(level="cord-features", indicator="warning", red_flag_refs=[])
    other_patient, other_service = card_record(patient_id="pt-someone-else"), card_record(service_id="another-service")
    await record_issued_cards(storage, [older, newer, other_patient, other_service])
    overridden_at = NOW - dt.timedelta(days=10)
    assert_ok(
        await service.post(
            {
                "feedback": [
                    overridden(older.card_uuid, NOW - dt.timedelta(days=19)),
                    overridden(
                        newer.card_uuid,
                        overridden_at,
                        overrideReason={"reason": {"code": "already-evaluated", "system": "urn:x"}},
                    ),
                    accepted(newer.card_uuid, NOW - dt.timedelta(days=1)),  # acceptance is not an override
                    overridden(other_patient.card_uuid, NOW - dt.timedelta(days=2)),
                ]
            }
        )
    )

    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW, window)
    assert memory is not None
    assert memory.card_uuid == newer.card_uuid and memory.overridden_at == overridden_at
    assert (memory.level, memory.indicator, memory.red_flag_refs) == ("cord-features", "warning", ())
    assert memory.override_reason == {"code": "already-evaluated", "system": "urn:x"}

    # Once the latest override leaves the window, the earlier one (still inside) is the answer.
    later = NOW + dt.timedelta(days=15)  # newer: 25 days ago, older: 34 days ago
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, later, window)
    assert memory is not None and memory.card_uuid == newer.card_uuid
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW, dt.timedelta(days=15))
    assert memory is not None and memory.card_uuid == newer.card_uuid
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW, dt.timedelta(days=9))
    assert memory is None
    # The older card carries its red flags with their dates.
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW - dt.timedelta(days=11), window)
    assert memory is not None and memory.card_uuid == older.card_uuid
    assert memory.red_flag_refs == tuple(older.red_flag_refs)
    assert memory.issued_at == NOW - dt.timedelta(days=20)

    # Outside the window entirely: none.
    assert await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW + dt.timedelta(days=21), window) is None
    # Before the override happened: none (a small clock skew is tolerated).
    assert await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW - dt.timedelta(days=30), window) is None
    # The window default comes from the settings (30 days).
    assert (await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW)).card_uuid == newer.card_uuid  # type: ignore[union-attr]
    # Another patient, another service, and a service that never issued the card: separate.
    assert (
        await recent_override(storage, SERVICE_ID, "pt-someone-else", NOW, window)
    ).card_uuid == other_patient.card_uuid  # type: ignore[union-attr]
    assert await recent_override(storage, "another-service", PATIENT_ID, NOW, window) is None
    assert await recent_override(storage, SERVICE_ID, "pt-nobody", NOW, window) is None
    assert PATIENT_ID not in all_stored_text(service.db)


@pytest.mark.anyio
async def test_recent_override_ignores_feedback_posted_to_another_service(service: Service) -> None:
    card = card_record(service_id="another-service")
    await record_issued_cards(service.storage, [card])
    # Posted to our service's endpoint, about a card another service issued.
    assert_ok(await service.post({"feedback": [overridden(card.card_uuid, NOW - dt.timedelta(days=1))]}))
    assert await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW) is None
    assert await recent_override(service.storage, "another-service", PATIENT_ID, NOW) is None


@pytest.mark.anyio
async def test_an_override_that_arrives_before_its_card_counts_once_the_card_is_recorded(service: Service) -> None:
    """Feedback can reach one replica before another has written the card: it is stored without a
    patient, and the card's arrival ties them (from either side, whichever is stored second)."""
    card = card_record()
    assert_ok(await service.post({"feedback": [overridden(card.card_uuid, NOW - dt.timedelta(days=1))]}))
    (row,) = service.db.rows(Feedback)
    assert row["patient_hash"] is None
    assert await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW) is None

    await record_issued_cards(service.storage, [card])
    (row,) = service.db.rows(Feedback)
    assert row["patient_hash"] == hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    memory = await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW)
    assert memory is not None and memory.card_uuid == card.card_uuid


@pytest.mark.anyio
async def test_feedback_on_a_known_card_is_stored_with_the_cards_patient(service: Service) -> None:
    card, other = card_record(), card_record(patient_id="pt-someone-else")
    await record_issued_cards(service.storage, [card, other])
    assert_ok(await service.post({"feedback": [overridden(card.card_uuid, NOW), accepted(other.card_uuid, NOW)]}))
    hashes = {row["card_uuid"]: row["patient_hash"] for row in service.db.rows(Feedback)}
    assert hashes == {
        card.card_uuid: hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest(),
        other.card_uuid: hmac.new(HASH_KEY.encode(), b"pt-someone-else", hashlib.sha256).hexdigest(),
    }


def test_the_override_look_up_starts_from_the_patients_overrides_not_their_cards(tmp_path: Path) -> None:
    """Its cost must not grow with how many cards the patient was shown (one per chart opening)."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    upgrade_database(url)
    engine = sa.create_engine(url)
    compiled = _RECENT_OVERRIDE.compile(dialect=engine.dialect)
    values = {"service_id": "s", "patient_hash": "h", "since": NOW, "until": NOW}
    with engine.connect() as connection:
        plan = [
            row[-1]
            for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled), tuple(values.get(name, 1) for name in compiled.positiontup or ())
            )
        ]
    engine.dispose()
    assert plan[0].startswith(
        "SEARCH feedback USING INDEX ix_feedback_service_id_patient_hash_outcome_outcome_timestamp"
    ), plan
    assert "issued_cards" in plan[1] and "card_uuid=?" in plan[1], plan


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0003_fills_the_patient_of_existing_feedback(backend: str, databases: Databases) -> None:
    url = databases.new(backend)
    upgrade_database(url, "0002")
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO issued_cards (card_uuid, service_id, hook_instance, patient_hash, indicator, level, red_flag_refs, issued_at)"
                    " VALUES ('c1', 's', 'h', 'hash-1', 'critical', 'urgent', '[]', '2026-11-20 10:00:00')"
                )
            )
            for card in ("c1", "c-unknown"):
                connection.execute(
                    sa.text(
                        "INSERT INTO feedback (card_uuid, service_id, outcome, outcome_timestamp, received_at)"
                        f" VALUES ('{card}', 's', 'overridden', '2026-11-21 10:00:00', '2026-11-21 10:00:01')"
                    )
                )
        upgrade_database(url)
        with engine.connect() as connection:
            rows = dict(connection.execute(sa.text("SELECT card_uuid, patient_hash FROM feedback")).all())
        assert rows == {"c1": "hash-1", "c-unknown": None}
        downgrade_database(url, "0002")
        assert "patient_hash" not in {c["name"] for c in sa.inspect(engine).get_columns("feedback")}
    finally:
        engine.dispose()


# --- settings and wiring -------------------------------------------------------------------------------


def test_patient_hash_key_has_a_development_default_that_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDS_PATIENT_HASH_KEY", raising=False)
    settings = StorageSettings()
    assert settings.uses_development_key
    with caplog.at_level(logging.WARNING, logger="cds_service.storage"):
        settings.warn_if_insecure()
    assert "CDS_PATIENT_HASH_KEY" in caplog.text
    monkeypatch.setenv("CDS_PATIENT_HASH_KEY", HASH_KEY)
    assert not StorageSettings().uses_development_key
    assert HASH_KEY not in repr(StorageSettings())
    with pytest.raises(ValidationError):
        StorageSettings(patient_hash_key="too-short")
    with pytest.raises(ValidationError):
        StorageSettings(database_url="sqlite+aiosqlite://")
    assert StorageSettings().override_window_days == 30


@pytest.mark.anyio
async def test_start_up_migrates_and_warns_about_the_development_key(
    databases: Databases, caplog: pytest.LogCaptureFixture
) -> None:
    url = databases.new("sqlite")
    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=StorageSettings(database_url=url))
    with caplog.at_level(logging.WARNING, logger="cds_service.storage"):
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
                assert_ok(await client.post(FEEDBACK_URL, json={"feedback": [GOOD]}))
    assert "CDS_PATIENT_HASH_KEY is not set" in caplog.text
    assert runtime_of(app).storage is None


@pytest.mark.anyio
async def test_without_storage_feedback_is_503() -> None:
    app = create_app(clock=lambda: NOW, auth=NO_AUTH)  # never started: its storage is not open
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
        response = await client.post(FEEDBACK_URL, json={"feedback": [GOOD]})
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"


def test_asgi_lifespan_opens_and_closes_the_storage(databases: Databases) -> None:
    """Through the ASGI lifespan protocol (as uvicorn runs it), not by calling the context directly."""
    from fastapi.testclient import TestClient

    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage_settings(databases.new("sqlite")))
    with TestClient(app) as client:
        assert isinstance(runtime_of(app).storage, Storage)
        response = client.post(FEEDBACK_URL, json={"feedback": [GOOD]})
        assert response.status_code == 200 and response.json() == {}
    assert runtime_of(app).storage is None


@pytest.mark.anyio
async def test_feedback_needs_client_authentication_by_default(database: Database) -> None:
    database.clear()
    app = create_app(clock=lambda: NOW, storage=storage_settings(database.url))  # client JWTs required (the default)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
            response = await client.post(FEEDBACK_URL, json={"feedback": [GOOD]})
    assert response.status_code == 401
    assert database.count(Feedback) == 0


# --- issued cards: written in batches after the answer (group commit) ------------------------------


@asynccontextmanager
async def app_with_linger(database: Database, linger_ms: int) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    database.clear()
    app = create_app(
        Settings(card_write_linger_ms=linger_ms),
        clock=lambda: NOW,
        auth=NO_AUTH,
        storage=storage_settings(database.url),
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
            yield app, client


@pytest.mark.anyio
async def test_cards_of_calls_within_the_linger_are_written_in_one_insert(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service.services import card_memory

    inserts: list[int] = []
    real = card_memory.record_issued_cards

    async def counting(storage: Storage, records: Any) -> int:
        inserts.append(len(records))
        return await real(storage, records)

    monkeypatch.setattr(card_memory, "record_issued_cards", counting)
    async with app_with_linger(database, linger_ms=400) as (_, client):
        for _ in range(3):
            response = await client.post(SERVICE_PATH, json=load_fixture("urgent-new-paraparesis"))
            assert [card["indicator"] for card in response.json()["cards"]] == ["critical"]
        assert database.count(IssuedCard) == 0  # answered; the writer is still gathering
        await eventually_async(lambda: database.count(IssuedCard) == 3)
    assert inserts == [3]


@pytest.mark.anyio
async def test_feedback_first_writes_the_cards_still_queued_so_the_override_counts_at_once(database: Database) -> None:
    async with app_with_linger(database, linger_ms=5000) as (_, client):
        first = (await client.post(SERVICE_PATH, json=load_fixture("urgent-new-paraparesis"))).json()["cards"][0]
        assert database.count(IssuedCard) == 0
        assert_ok(
            await client.post(
                FEEDBACK_URL, json={"feedback": [overridden(first["uuid"], NOW - dt.timedelta(minutes=1))]}
            )
        )
        assert database.count(IssuedCard) == 1
        second = (await client.post(SERVICE_PATH, json=load_fixture("urgent-new-paraparesis"))).json()["cards"][0]
        assert second["indicator"] == "info"  # quieted by the override (alert-fatigue rule)


async def eventually_async(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
