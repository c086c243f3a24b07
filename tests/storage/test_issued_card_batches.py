"""Issued cards are written in batches after the answer (group commit), and feedback writes them first."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.storage import (
    Storage,
)
from cds_service.storage.models import IssuedCard
from tests.conftest import NO_AUTH, NOW, load_fixture
from tests.storage.support import (
    FEEDBACK_URL,
    SERVICE_PATH,
    Database,
    assert_ok,
    overridden,
    storage_settings,
)

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
