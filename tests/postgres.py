"""A fresh PostgreSQL database per test (or module), on the machine's server, dropped afterwards.

The server is CDS_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test, trust auth).
Without a reachable server the PostgreSQL tests skip, unless CDS_TEST_REQUIRE_POSTGRES=1 (CI) makes
that a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.storage.db import sync_url

POSTGRES_ADMIN_URL = os.environ.get("CDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def admin_connection() -> Any:
    """An autocommit psycopg connection to the server's admin database."""
    import psycopg

    conninfo = sync_url(POSTGRES_ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


def postgres_reachable() -> bool:
    """True if the server answers; False (skip) or a test failure (CDS_TEST_REQUIRE_POSTGRES=1) if not."""
    try:
        admin_connection().close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"
        if os.environ.get("CDS_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        return False
    return True


def require_postgres() -> None:
    """Skip the test without a reachable server (fail it in CI)."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}")


@contextlib.contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new empty database `<prefix>_<random>` for the block; yields its async SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sync_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, prefix: str) -> Iterator[str]:
    """An empty database of `backend` ("sqlite": a file in `folder`; "postgresql": see above)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / (prefix + '.db')}"
        return
    require_postgres()
    with fresh_postgres_database(prefix) as url:
        yield url
