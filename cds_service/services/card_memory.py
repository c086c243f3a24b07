"""What the services remember between calls, through the storage layer: the cards they issued (so
feedback can be tied to them) and overrides (for the alert-fatigue rule). A storage outage never
blocks a card: failures are logged (no PHI) and the call goes on as if nothing were remembered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Callable

from cds_service.clinical.decision import Decision
from cds_service.protocol.models import Card
from cds_service.storage.repository import CardRecord, OverrideMemory, RedFlagRef, record_issued_cards, recent_override

log = logging.getLogger(__name__)


class CardMemory:
    def __init__(self, storage: Callable[[], Any]):
        self._storage = storage  # the app's Storage once started (None before, or when not installed)
        self._pending: set[asyncio.Task[None]] = set()

    def remember_soon(
        self, cards: list[Card], decision: Decision, service_id: str, hook_instance: str, patient_id: str, now: dt.datetime
    ) -> None:
        """Record the issued cards after the answer has gone: the EHR does not wait for our write.
        (A crash in between loses only the link from later feedback to these cards; the feedback
        itself is still stored.)"""
        if self._storage() is None or not cards:
            return
        task = asyncio.get_running_loop().create_task(self.remember(cards, decision, service_id, hook_instance, patient_id, now))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Finish the writes still under way (at shutdown, before the storage closes)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def last_override(self, service_id: str, patient_id: str, now: dt.datetime) -> OverrideMemory | None:
        storage = self._storage()
        if storage is None:
            return None
        try:
            return await recent_override(storage, service_id, patient_id, now)
        except Exception as exc:  # noqa: BLE001 - the card matters more than the memory
            log.warning("card memory: override look-up failed", extra={"reason": type(exc).__name__})
            return None

    async def remember(
        self, cards: list[Card], decision: Decision, service_id: str, hook_instance: str, patient_id: str, now: dt.datetime
    ) -> None:
        storage = self._storage()
        if storage is None or not cards:
            return
        red_flags = [RedFlagRef(f.evidence.reference, f.concept, f.evidence.date) for f in decision.facts.new_red_flags]
        records = [
            CardRecord(card.uuid or "", service_id, hook_instance, patient_id, card.indicator, decision.level.value, red_flags, now)
            for card in cards
            if card.uuid
        ]
        try:
            await record_issued_cards(storage, records)
        except Exception as exc:  # noqa: BLE001
            log.warning("card memory: recording issued cards failed", extra={"reason": type(exc).__name__})
