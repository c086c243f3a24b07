"""Engine and session factory: opened at start-up, disposed at shutdown, held by the app's `Runtime`.

Async SQLAlchemy: the service is async end to end (the hook call awaits FHIR reads on a ~500 ms
budget), so the database is awaited on the same event loop rather than occupying the shared thread
pool. Drivers: aiosqlite for SQLite, psycopg 3 for PostgreSQL. psycopg serves both the async engine
and the sync one Alembic uses, so one PostgreSQL driver is installed, not two.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from cds_service.settings import load_settings
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


SQLITE_BUSY_TIMEOUT_MS = 5_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    # WAL lets readers go on while one writer writes; the busy timeout makes concurrent writers
    # wait for each other (within a bound) instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
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


def create_engine_for(url: str | URL, settings: StorageSettings | None = None, **kwargs: Any) -> AsyncEngine:
    """The service's engine, with every wait bounded by `settings` (defaults when None): the
    PostgreSQL connect timeout and server-side statement timeout, the pool checkout timeout, the
    SQLite busy timeout. Waits on a server that accepts connections but never answers (frozen) are
    bounded by the caller, with `bounded()`."""
    settings = settings or StorageSettings()
    target = async_url(url)
    kwargs.setdefault("pool_timeout", settings.db_pool_timeout_seconds)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, **kwargs)
        pragmas = functools.partial(_sqlite_pragmas, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        event.listen(engine.sync_engine, "connect", pragmas)
        return engine
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("connect_timeout", settings.db_connect_timeout_seconds)
    if target.get_driver_name() == "psycopg":
        connect_args.setdefault("options", f"-c statement_timeout={settings.db_statement_timeout_ms}")
    return create_async_engine(target, pool_pre_ping=True, connect_args=connect_args, **kwargs)


T = TypeVar("T")
# Database operations given up on by `bounded()`, kept referenced until their clean-up ends.
_abandoned: set[asyncio.Task[Any]] = set()


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at garbage collection


def abandoned_operations() -> int:
    """Database operations given up on whose clean-up has not ended yet (bounded by the pool size)."""
    return len(_abandoned)


async def bounded(operation: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Await `operation()` for at most `timeout` seconds; TimeoutError after that.

    A plain `asyncio.timeout()` is not enough against a frozen server: after the cancellation,
    leaving `async with engine.connect()` awaits the connection's return to the pool (a rollback,
    shielded from cancellation) on the same frozen socket. So the operation runs in a task of its
    own, and on timeout that task is cancelled and left to finish its clean-up in the background
    (psycopg gives up on an unanswered cancellation after a few seconds and closes the connection).
    How many such tasks can exist at once is bounded by the pool (size + overflow) and its
    checkout timeout.
    """
    task: asyncio.Task[T] = asyncio.ensure_future(operation())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if task in done:
        return task.result()
    _abandon(task)
    raise TimeoutError(f"the database did not answer within {timeout:g} s")


def _abandon(task: asyncio.Task[Any]) -> None:
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget)


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
    settings = settings or load_settings(StorageSettings)
    settings.warn_if_insecure()
    if settings.migrate_on_startup:
        from cds_service.storage.migrations import upgrade_database

        # Alembic is synchronous: keep it off the event loop.
        await asyncio.to_thread(upgrade_database, settings.database_url)
    engine = create_engine_for(settings.database_url, settings)
    log.info("storage open", extra={"event": "storage", "database": safe_url(engine.url)})
    return Storage(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        hash_patient=PatientHasher(settings.patient_hash_key.get_secret_value()),
        settings=settings,
        reader=create_sqlite_reader(settings.database_url),
    )
