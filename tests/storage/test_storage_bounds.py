"""The card memory within bounds, on SQLite and on the machine's PostgreSQL (a database of its own,
dropped at the end): one bad row never loses the rest of a batch; a feedback flush waits only for
what was queued before it, however fast the queue refills; `bounded()` gives up on time.
Frozen and stopped database servers: tests/system/test_dependency_faults.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from cds_service.services.card_memory import CardMemory
from cds_service.storage import CardRecord, RedFlagRef, StorageSettings, open_storage, record_issued_cards
from cds_service.storage.db import abandoned_operations, bounded, sync_url
from cds_service.storage.models import IssuedCard
from tests.conftest import NOW
from tests.postgres import fresh_database

HASH_KEY = "bounds-test-patient-hash-key-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "cds_test_bounds") as url:
        yield url


def card(hook_instance: str | None = None, **changes: Any) -> CardRecord:
    values: dict[str, Any] = dict(
        card_uuid=str(uuid.uuid4()),
        service_id="ms-back-pain-patient-view",
        hook_instance=hook_instance or str(uuid.uuid4()),
        patient_id="pt-bounds",
        indicator="critical",
        level="urgent",
        red_flag_refs=[RedFlagRef("Condition/c1", "weakness", dt.date(2026, 11, 10))],
        issued_at=NOW,
    )
    values.update(changes)
    return CardRecord(**values)


def stored_uuids(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.select(IssuedCard.__table__.c.card_uuid)).scalars())
    finally:
        engine.dispose()


def test_one_bad_row_does_not_lose_the_rest_of_the_batch(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A NUL character is refused by PostgreSQL (text cannot hold it): only that row is lost."""
    good = [card() for _ in range(40)]
    bad = [card(hook_instance="bad\x00instance"), card(red_flag_refs=[RedFlagRef("Condition/\x00", "weakness", None)])]
    batch = good[:20] + bad[:1] + good[20:] + bad[1:]

    async def main() -> int:
        storage = await open_storage(StorageSettings(database_url=database_url, patient_hash_key=HASH_KEY))
        try:
            return await record_issued_cards(storage, batch)
        finally:
            await storage.close()

    with caplog.at_level(logging.WARNING):
        stored = asyncio.run(main())
    uuids = stored_uuids(database_url)
    assert {c.card_uuid for c in good} <= uuids
    if database_url.startswith("postgresql"):
        assert stored == 40 and not ({c.card_uuid for c in bad} & uuids)
        warning = next(r for r in caplog.records if "row by row" in r.getMessage())
        assert warning.__dict__["count"] == 2 and "\x00" not in warning.getMessage()
    else:  # SQLite stores the NUL
        assert stored == 42


def test_a_feedback_flush_waits_only_for_what_was_queued_before_it(database_url: str) -> None:
    """Under load the queue never empties: a flush that waited for an empty queue would never end."""

    async def main() -> tuple[bool, float, int, int]:
        settings = StorageSettings(database_url=database_url, patient_hash_key=HASH_KEY)
        storage = await open_storage(settings)
        memory = CardMemory(lambda: storage, linger=0.05)
        producing = True

        async def produce() -> None:
            while producing:
                memory._queue.append(card())  # as remember_soon does, without building a Decision
                memory._queued_total += 1
                if memory._writer is None or memory._writer.done():
                    memory._wake, memory._progress = asyncio.Event(), asyncio.Event()
                    memory._writer = asyncio.get_running_loop().create_task(memory._write_queued(memory._wake))
                await asyncio.sleep(0.0005)

        producer = asyncio.create_task(produce())
        try:
            await asyncio.sleep(0.3)
            target = memory._queued_total
            started = time.perf_counter()
            flushed = await memory.flush(timeout=5.0)
            elapsed = time.perf_counter() - started
            return flushed, elapsed, target, memory._settled_total
        finally:
            producing = False
            await producer
            await memory.flush(timeout=10.0)
            await storage.close()

    flushed, elapsed, target, settled = asyncio.run(main())
    assert flushed and settled >= target
    assert elapsed < 4.0  # the producer goes on for the whole flush; it ends once the earlier cards are in


def test_bounded_gives_up_on_time_and_lets_the_operation_end_in_the_background() -> None:
    async def main() -> tuple[float, int, int]:
        release = asyncio.Event()

        async def frozen() -> None:
            try:
                await release.wait()
            except asyncio.CancelledError:
                await release.wait()  # like a connection's clean-up on a frozen server: it outlives the cancel
                raise

        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await bounded(frozen, 0.1)
        elapsed = time.perf_counter() - started
        waiting = abandoned_operations()
        release.set()
        await asyncio.sleep(0.05)
        return elapsed, waiting, abandoned_operations()

    elapsed, waiting, after = asyncio.run(main())
    assert elapsed < 0.5
    assert waiting == 1 and after == 0
