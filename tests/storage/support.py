"""What the storage tests share: a database per backend, the app with storage, record builders.

Feedback persistence (CDS Hooks 2.0 "Feedback") is tested on SQLite and on PostgreSQL.

Each backend gets a database of its own for the test session: a temporary SQLite file, and a
PostgreSQL database `cds_test_feedback_<random>` created on the local server (CDS_TEST_POSTGRES_URL,
default postgresql://postgres@127.0.0.1:5432/test) and dropped at the end. Without a reachable
server the PostgreSQL tests are skipped, unless CDS_TEST_REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from cds_service.app import create_app
from cds_service.runtime import runtime_of
from cds_service.storage import (
    CardRecord,
    RedFlagRef,
    Storage,
    StorageSettings,
    upgrade_database,
)
from cds_service.storage.db import sync_url
from cds_service.storage.models import Base, Feedback, IssuedCard
from tests.conftest import NO_AUTH, NOW
from tests.postgres import POSTGRES_ADMIN_URL, admin_connection, require_postgres

SERVICE_ID = "ms-back-pain-patient-view"
FEEDBACK_URL = f"/cds-services/{SERVICE_ID}/feedback"
SERVICE_PATH = f"/cds-services/{SERVICE_ID}"
HASH_KEY = "test-patient-hash-key-0123456789abcdef"
PATIENT_ID = "pt-feedback-7f3a9c"  # distinctive, so a leak anywhere is found by a plain search
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

    def new(self, backend: str) -> str:
        """An empty database's async URL."""
        name = f"cds_test_feedback_{uuid.uuid4().hex[:16]}"
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self._tmp / (name + '.db')}"
        require_postgres()
        with admin_connection() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self._postgres.append(name)
        return sync_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self._postgres:
            return
        with admin_connection() as admin:
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


# A valid override of an unknown card: feedback the endpoint stores.
GOOD = overridden("4e0a3a1e-3283-4575-ab82-028d55fe2719", "2026-11-20T10:00:00Z")
