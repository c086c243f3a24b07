"""Engine and session factory: opened at start-up, disposed at shutdown, held by the app's `Runtime`.

Async SQLAlchemy: the service is async end to end (the hook call awaits FHIR reads on a ~500 ms
budget), so the database is awaited on the same event loop rather than occupying the shared thread
pool. Drivers: aiosqlite for SQLite, psycopg 3 for PostgreSQL. psycopg serves both the async engine
and the sync one Alembic uses, so one PostgreSQL driver is installed, not two.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from cds_service.storage.settings import StorageSettings

log = logging.getLogger("cds_service.storage")

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_SYNC_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
}


def _with_driver(url: str | URL, drivers: dict[str, str]) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    try:
        return parsed.set(drivername=drivers[parsed.drivername])
    except KeyError:
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use SQLite or PostgreSQL") from None


def async_url(url: str | URL) -> URL:
    """The URL the service uses (async driver), from a sync or async URL."""
    return _with_driver(url, _ASYNC_DRIVERS)


def sync_url(url: str | URL) -> URL:
    """The URL Alembic uses (sync driver), from a sync or async URL."""
    return _with_driver(url, _SYNC_DRIVERS)


def safe_url(url: str | URL) -> str:
    """For logs: the URL without its password."""
    return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)


SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer writes; the busy timeout makes concurrent writers
    # wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


SQLITE_READER_BUSY_TIMEOUT_MS = 200


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_READER_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def create_sqlite_reader(url: str | URL) -> Engine | None:
    """For SQLite, a synchronous read-only engine on the same file (None for other databases).

    SQLite is a library in our own process: an indexed read takes ~0.1 ms, while handing it to
    aiosqlite's thread and back costs ~1-2 ms of event-loop round trips on every hook call. In WAL
    mode (set by the writer engine) a reader does not wait for writers, so reading directly on the
    event loop blocks it for no longer than the read; the short busy timeout bounds the rare waits
    (WAL recovery) and a failed read is treated as "nothing remembered" by the caller.
    """
    target = sync_url(url)
    if target.get_backend_name() != "sqlite":
        return None
    engine = create_engine(target)
    event.listen(engine, "connect", _sqlite_reader_pragmas)
    return engine


def create_engine_for(url: str | URL, **kwargs: Any) -> AsyncEngine:
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(target, pool_pre_ping=True, **kwargs)


class PatientHasher:
    """HMAC-SHA256 of a patient id under the deployment's secret key: a stable pseudonym."""

    def __init__(self, key: str):
        self._key = key.encode("utf-8")

    def __call__(self, patient_id: str) -> str:
        return hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never show the key
        return "PatientHasher(<secret>)"


@dataclass
class Storage:
    """What the repository functions need: the engine, a session factory, the patient hasher."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hash_patient: PatientHasher
    settings: StorageSettings
    reader: Engine | None = None  # SQLite only: direct reads on the hook path (create_sqlite_reader)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()
        if self.reader is not None:
            self.reader.dispose()


async def open_storage(settings: StorageSettings | None = None) -> Storage:
    """Migrate (unless disabled) and open the database. Call once at start-up; `close()` at shutdown."""
    settings = settings or StorageSettings()
    settings.warn_if_insecure()
    if settings.migrate_on_startup:
        from cds_service.storage.migrations import upgrade_database

        # Alembic is synchronous: keep it off the event loop.
        await asyncio.to_thread(upgrade_database, settings.database_url)
    engine = create_engine_for(settings.database_url)
    log.info("storage open: %s", safe_url(engine.url))
    return Storage(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        hash_patient=PatientHasher(settings.patient_hash_key.get_secret_value()),
        settings=settings,
        reader=create_sqlite_reader(settings.database_url),
    )
