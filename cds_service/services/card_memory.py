"""What the services remember between calls, through the storage layer: the cards they issued (so
feedback can be tied to them) and overrides (for the alert-fatigue rule). A storage outage never
blocks a card: every database use is bounded in time (`storage.db.bounded`), failures are logged (no
PHI) and counted, and the call goes on as if nothing were remembered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable

from cds_service.clinical.decision import Decision
from cds_service.metrics import STORAGE_FALLBACKS
from cds_service.protocol.models import Card
from cds_service.storage.db import Storage, bounded
from cds_service.storage.models import FATIGUE_DOWNGRADED, FATIGUE_RAISED_AGAIN
from cds_service.storage.repository import CardRecord, OverrideMemory, RedFlagRef, recent_override, record_issued_cards

log = logging.getLogger(__name__)


MAX_BATCH = 500
# Cards queued while the database cannot take them: beyond this many the oldest are dropped (each
# is only the link from later feedback to a card already answered), so memory stays bounded.
MAX_QUEUED = 20_000
FLUSH_TIMEOUT_SECONDS = 1.0  # a feedback post waits at most this long for earlier cards to be written


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
    reaching this process first flushes what was queued before it (`flush()`, bounded in time).

    The override look-up on the hook path gives up after `db_read_timeout_ms` (SQLite: a read in our
    own process, on the event loop, bounded by the reader's busy timeout); after any database
    failure the hook path skips the database for `db_retry_after_seconds` (no call waits on a
    database known to be down), then tries again.
    """

    def __init__(self, storage: Callable[[], Storage | None], linger: float = 0.05):
        self._storage = storage  # the app's Storage once started (None before, or when not installed)
        self._linger = linger
        self._queue: deque[CardRecord] = deque()
        self._queued_total = 0  # records ever queued
        self._settled_total = 0  # records written, refused or dropped (in queue order)
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._skip_reads_until = 0.0  # time.monotonic(): the database failed recently

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
        before = len(self._queue)
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
        self._queued_total += len(self._queue) - before
        if len(self._queue) > MAX_QUEUED:
            dropped = len(self._queue) - MAX_QUEUED
            for _ in range(dropped):
                self._queue.popleft()
            self._settle(dropped)
            STORAGE_FALLBACKS.labels("card_write", "queue_full").inc(dropped)
            log.warning(
                "card memory: write queue full, oldest issued cards dropped",
                extra={"event": "card_memory", "reason": "queue_full", "count": dropped},
            )
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._wake, self._progress = asyncio.Event(), asyncio.Event()
            self._writer = loop.create_task(self._write_queued(self._wake))

    async def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Write what is queued now, without the linger, waiting at most `timeout` seconds (before
        feedback is stored; at shutdown). Only the cards queued before this call are waited for: a
        queue that keeps refilling under load does not hold the caller. True when they are written."""
        target = self._queued_total
        if self._settled_total >= target:
            return True
        if time.monotonic() < self._skip_reads_until:
            return False  # the database failed a moment ago: do not hold the caller for writes that will fail
        writer = self._writer
        if writer is not None and not writer.done() and writer.get_loop() is asyncio.get_running_loop():
            assert self._wake is not None and self._progress is not None
            self._wake.set()
            deadline = time.monotonic() + timeout
            while self._settled_total < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or writer.done():
                    break
                self._progress.clear()
                try:
                    await asyncio.wait_for(self._progress.wait(), remaining)
                except TimeoutError:
                    break
        elif self._queue:  # queued by a loop that is gone (tests): write it here
            try:
                await asyncio.wait_for(self._write_queued(None, stop_at=target), timeout)
            except TimeoutError:
                pass
        return self._settled_total >= target

    async def _write_queued(self, wake: asyncio.Event | None, stop_at: int | None = None) -> None:
        if wake is not None and self._linger > 0:
            try:
                await asyncio.wait_for(wake.wait(), self._linger)
            except TimeoutError:
                pass
        while self._queue and (stop_at is None or self._settled_total < stop_at):
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            try:
                await self._write(batch)
            finally:
                self._settle(len(batch))

    def _settle(self, count: int) -> None:
        self._settled_total += count
        if self._progress is not None:
            self._progress.set()

    async def _write(self, records: list[CardRecord]) -> None:
        storage = self._storage()
        if storage is None:
            return
        try:
            await bounded(lambda: record_issued_cards(storage, records), storage.settings.db_write_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - the cards have been answered; only the memory is lost
            self._database_failed(storage)
            STORAGE_FALLBACKS.labels("card_write", _reason(exc)).inc()
            log.warning(
                "card memory: recording issued cards failed",
                extra={"event": "card_memory", "error_type": type(exc).__name__, "cards": len(records)},
            )

    async def last_override(self, service_id: str, patient_id: str, now: dt.datetime) -> OverrideMemory | None:
        """The patient's latest override, or None: also when the database is slow or down (then the
        card is shown without the alert-fatigue memory, and `cds_storage_fallbacks_total` counts it)."""
        storage = self._storage()
        if storage is None:
            return None
        if time.monotonic() < self._skip_reads_until:
            STORAGE_FALLBACKS.labels("override_read", "recently_failed").inc()
            return None
        try:
            if storage.reader is not None:
                # SQLite's direct reader: the read runs to its end without yielding (no task could
                # bound it), so it is awaited as it is; the reader's busy timeout bounds it.
                return await recent_override(storage, service_id, patient_id, now)
            return await bounded(
                lambda: recent_override(storage, service_id, patient_id, now),
                storage.settings.db_read_timeout_ms / 1000,
            )
        except Exception as exc:  # noqa: BLE001 - the card matters more than the memory
            self._database_failed(storage)
            STORAGE_FALLBACKS.labels("override_read", _reason(exc)).inc()
            log.warning(
                "card memory: override look-up failed", extra={"event": "card_memory", "error_type": type(exc).__name__}
            )
            return None

    def _database_failed(self, storage: Storage) -> None:
        self._skip_reads_until = time.monotonic() + storage.settings.db_retry_after_seconds


def _reason(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else "error"
