"""Databases for the report tests: a fresh SQLite file or PostgreSQL database per test, dropped after.

PostgreSQL: the server of CDS_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test);
without one the PostgreSQL cases skip, unless CDS_TEST_REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cds_service.storage import Storage, StorageSettings, open_storage
from tests.postgres import fresh_database

HASH_KEY = "report-test-patient-hash-key-0123456789"
BACKENDS = ["sqlite", "postgresql"]
T = TypeVar("T")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (async URL), removed after the test."""
    with fresh_database(request.param, tmp_path, "cds_test_report") as url:
        yield url


def storage_settings(url: str) -> StorageSettings:
    return StorageSettings(database_url=url, patient_hash_key=HASH_KEY)


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Storage]:
    """The database, migrated and open."""
    storage = await open_storage(storage_settings(url))
    try:
        yield storage
    finally:
        await storage.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on a fresh event loop in a thread of its own. (Not the anyio plugin: a
    Playwright session earlier in the run keeps an event loop running in the main thread.)"""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
