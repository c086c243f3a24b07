"""What the services remember between calls, through the storage layer: the cards they issued (so
feedback can be tied to them) and overrides (for the alert-fatigue rule). A storage outage never
blocks a card: failures are logged (no PHI) and the call goes on as if nothing were remembered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from cds_service.clinical.decision import Decision
from cds_service.protocol.models import Card
from cds_service.storage.db import Storage
from cds_service.storage.models import FATIGUE_DOWNGRADED, FATIGUE_RAISED_AGAIN
from cds_service.storage.repository import CardRecord, OverrideMemory, RedFlagRef, recent_override, record_issued_cards

log = logging.getLogger(__name__)


MAX_BATCH = 500


def fatigue_action(decision: Decision) -> str | None:
    """What the alert-fatigue rule did to this decision, as the issued card records it (for the report)."""
    if decision.quieted_by is not None:
        return FATIGUE_DOWNGRADED
    if decision.raised_again_after is not None:
        return FATIGUE_RAISED_AGAIN
    return None


class CardMemory:
    """Issued cards are written in batches, after the answer has gone (group commit).

    A call queues its cards and returns; one writer task per process waits `linger` seconds,
    then writes everything queued by then in one INSERT, and repeats while more is queued. One
    card per write costs ~1.1 ms of CPU on SQLite, a batch of ten ~0.2 ms per card: at a busy
    service's rate the writes would otherwise take a sixth of the worker. The cost is a delay of
    at most `linger` (default 50 ms) before another replica can see the card; feedback that
    arrives meanwhile is stored anyway and tied to the card by the later join, and feedback
    reaching this process first flushes the queue (`flush()`).
    """

    def __init__(self, storage: Callable[[], Storage | None], linger: float = 0.05):
        self._storage = storage  # the app's Storage once started (None before, or when not installed)
        self._linger = linger
        self._queue: list[CardRecord] = []
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    def remember_soon(
        self,
        cards: list[Card],
        decision: Decision,
        service_id: str,
        hook_instance: str,
        patient_id: str,
        now: dt.datetime,
    ) -> None:
        """Queue the issued cards for the writer: the EHR does not wait for our write. (A crash
        before the write loses only the link from later feedback to these cards; the feedback
        itself is still stored.)"""
        if self._storage() is None or not cards:
            return
        red_flags = [RedFlagRef(f.evidence.reference, f.concept, f.evidence.date) for f in decision.facts.new_red_flags]
        self._queue.extend(
            CardRecord(
                card.uuid,
                service_id,
                hook_instance,
                patient_id,
                card.indicator,
                decision.level.value,
                red_flags,
                now,
                fatigue_action=fatigue_action(decision),
                suggestions=[(s.uuid, s.label) for s in card.suggestions or () if s.uuid],
            )
            for card in cards
            if card.uuid
        )
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._writer = loop.create_task(self._write_queued(self._wake))

    async def flush(self) -> None:
        """Write what is queued now, without the linger (before feedback is stored; at shutdown)."""
        writer = self._writer
        if writer is not None and not writer.done() and writer.get_loop() is asyncio.get_running_loop():
            assert self._wake is not None
            self._wake.set()
            await asyncio.gather(writer, return_exceptions=True)
        if self._queue:  # queued by a loop that is gone (tests): write it here
            await self._write_queued(None)

    async def _write_queued(self, wake: asyncio.Event | None) -> None:
        if wake is not None and self._linger > 0:
            try:
                await asyncio.wait_for(wake.wait(), self._linger)
            except TimeoutError:
                pass
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            await self._write(batch)

    async def _write(self, records: list[CardRecord]) -> None:
        storage = self._storage()
        if storage is None:
            return
        try:
            await record_issued_cards(storage, records)
        except Exception as exc:  # noqa: BLE001 - the cards have been answered; only the memory is lost
            log.warning(
                "card memory: recording issued cards failed",
                extra={"reason": type(exc).__name__, "cards": len(records)},
            )

    async def last_override(self, service_id: str, patient_id: str, now: dt.datetime) -> OverrideMemory | None:
        storage = self._storage()
        if storage is None:
            return None
        try:
            return await recent_override(storage, service_id, patient_id, now)
        except Exception as exc:  # noqa: BLE001 - the card matters more than the memory
            log.warning("card memory: override look-up failed", extra={"reason": type(exc).__name__})
            return None
