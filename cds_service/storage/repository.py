"""What the service reads and writes, as plain async functions over a `Storage`.

Writes are single `INSERT ... ON CONFLICT DO NOTHING` statements: repeating them is harmless, and
concurrent writers of the same row wait for each other (PostgreSQL: the unique index; SQLite: the
database write lock) instead of failing, so concurrent posts lose nothing and store nothing twice.
Patient ids are hashed here, before anything reaches the database.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError

from cds_service.storage.db import Storage
from cds_service.storage.direct_read import DirectRead
from cds_service.storage.models import Feedback, IssuedCard

log = logging.getLogger("cds_service.storage")

Outcome = Literal["accepted", "overridden"]

# An override stamped a little after "now" is the EHR's clock running ahead, not the future.
CLOCK_SKEW = dt.timedelta(minutes=5)

_FEEDBACK_KEY = ("card_uuid", "service_id", "outcome", "outcome_timestamp")


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RedFlagRef:
    """A red flag shown on a card: the resource it came from, its concept and its clinical date."""

    reference: str  # "Condition/abc"
    concept: str  # "weakness", "bladder", ...
    date: dt.date | None

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "concept": self.concept,
            "date": self.date.isoformat() if self.date else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RedFlagRef:
        date = value.get("date")
        return cls(
            str(value.get("reference", "")),
            str(value.get("concept", "")),
            dt.date.fromisoformat(date) if date else None,
        )


@dataclass(frozen=True)
class CardRecord:
    """A card as returned to the EHR. `patient_id` is in clear here; only its HMAC is stored."""

    card_uuid: str
    service_id: str
    hook_instance: str
    patient_id: str
    indicator: str
    level: str
    red_flag_refs: Sequence[RedFlagRef]
    issued_at: dt.datetime
    fatigue_action: str | None = None  # models.FATIGUE_ACTIONS: what the alert-fatigue rule did, if anything
    suggestions: Sequence[tuple[str, str]] = ()  # (suggestion uuid, label)


@dataclass(frozen=True)
class FeedbackRecord:
    """One validated CDS Hooks feedback entry."""

    card_uuid: str
    outcome: Outcome
    outcome_timestamp: dt.datetime
    accepted_suggestions: Sequence[str] | None = None  # suggestion uuids
    override_reason: dict[str, Any] | None = None  # the Coding
    user_comment: str | None = None


@dataclass(frozen=True)
class FeedbackResult:
    received: int
    stored: int  # new rows
    duplicates: int  # already stored (resubmission), or repeated within the request
    unknown_cards: int  # distinct cards this service has no record of issuing (stored all the same)


@dataclass(frozen=True)
class OverrideMemory:
    """The latest override, for one patient and service, of a card this service issued."""

    card_uuid: str
    overridden_at: dt.datetime
    override_reason: dict[str, Any] | None
    red_flag_refs: tuple[RedFlagRef, ...]
    level: str
    indicator: str
    issued_at: dt.datetime


def _insert(dialect: str, table: Any) -> Any:
    """INSERT with the dialect's ON CONFLICT support (both dialects spell it the same way)."""
    if dialect == "postgresql":
        return postgresql_insert(table)
    if dialect == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(dialect)  # pragma: no cover - db.py accepts only these two


async def record_issued_cards(storage: Storage, cards: Iterable[CardRecord]) -> int:
    """Remember the cards returned to an EHR. Returns how many were new (recording twice is harmless)."""
    rows = {
        card.card_uuid: {
            "card_uuid": card.card_uuid,
            "service_id": card.service_id,
            "hook_instance": card.hook_instance,
            "patient_hash": storage.hash_patient(card.patient_id),
            "indicator": card.indicator,
            "level": card.level,
            "red_flag_refs": [ref.to_json() for ref in card.red_flag_refs],
            "issued_at": _utc(card.issued_at),
            "fatigue_action": card.fatigue_action,
            "suggestions": [{"id": uuid, "label": label} for uuid, label in card.suggestions],
        }
        for card in cards
    }
    if not rows:
        return 0
    batch = list(rows.values())
    try:
        stored = await _insert_issued_cards(storage, batch)
    except Exception as exc:
        if len(batch) == 1 or not _row_fault(exc):
            raise
        # One bad row (e.g. a NUL character PostgreSQL refuses) fails the whole statement: write the
        # rows one by one so that the other calls' cards are still remembered.
        stored, refused = 0, 0
        for row in batch:
            try:
                stored += await _insert_issued_cards(storage, [row])
            except Exception as row_exc:
                if not _row_fault(row_exc):
                    raise
                refused += 1
        log.warning(
            "issued cards: rows refused by the database, the rest of the batch stored row by row",
            extra={"event": "issued_cards", "error_type": type(exc).__name__, "count": refused},
        )
    # Feedback that arrived before its card (from another replica, or within the writer's linger)
    # gets the card's patient hash now. After the commit, so that of two racing writers of the card
    # and of its feedback, the one committing second always sees the other's row.
    async with storage.engine.begin() as connection:
        await connection.execute(_fill_feedback_patient_hash(list(rows)))
    return stored


async def _insert_issued_cards(storage: Storage, rows: list[dict[str, Any]]) -> int:
    async with storage.engine.begin() as connection:  # every issued card passes here: no ORM session
        # One statement for any batch size (executemany): SQLAlchemy compiles it once per dialect,
        # where a multi-row VALUES clause would be compiled anew for every batch.
        return len((await connection.execute(_issued_card_insert(storage.dialect), rows)).all())


def _row_fault(exc: BaseException) -> bool:
    """A fault of the data (a row the database refuses), not of the connection: worth retrying row by row."""
    if isinstance(exc, OperationalError | InterfaceError):
        return False
    if isinstance(exc, DBAPIError):
        return not exc.connection_invalidated
    return isinstance(exc, StatementError | ValueError | TypeError)


@functools.cache
def _issued_card_insert(dialect: str) -> Any:
    table = IssuedCard.__table__
    return _insert(dialect, table).on_conflict_do_nothing(index_elements=["card_uuid"]).returning(table.c.card_uuid)


def _fill_feedback_patient_hash(card_uuids: list[str]) -> Any:
    """UPDATE: copy the issued card's patient_hash onto feedback rows of these cards that lack it."""
    f, c = Feedback.__table__.c, IssuedCard.__table__.c
    same_card = and_(c.card_uuid == f.card_uuid, c.service_id == f.service_id)
    return (
        update(Feedback)
        .where(f.patient_hash.is_(None), f.card_uuid.in_(card_uuids), exists().where(same_card))
        .values(patient_hash=select(c.patient_hash).where(same_card).scalar_subquery())
    )


async def record_feedback(
    storage: Storage,
    service_id: str,
    items: Sequence[FeedbackRecord],
    received_at: dt.datetime | None = None,
) -> FeedbackResult:
    """Store feedback idempotently: an entry equal in (card, service, outcome, outcomeTimestamp) to
    one already stored is not stored again. Feedback on unknown cards is stored too (and counted)."""
    received_at = _utc(received_at or _now())
    rows: dict[tuple[str, str, dt.datetime], dict[str, Any]] = {}
    for item in items:
        timestamp = _utc(item.outcome_timestamp)
        rows.setdefault(
            (item.card_uuid, item.outcome, timestamp),
            {
                "card_uuid": item.card_uuid,
                "service_id": service_id,
                "outcome": item.outcome,
                "accepted_suggestions": [{"id": s} for s in item.accepted_suggestions]
                if item.accepted_suggestions
                else None,
                "override_reason": dict(item.override_reason) if item.override_reason else None,
                "user_comment": item.user_comment,
                "outcome_timestamp": timestamp,
                "received_at": received_at,
            },
        )
    if not rows:
        return FeedbackResult(received=len(items), stored=0, duplicates=0, unknown_cards=0)

    cards = {row["card_uuid"] for row in rows.values()}
    # A read of its own (it autocommits on SQLite), then a write-only transaction: no read-to-write
    # lock upgrade, which SQLite would refuse at once under concurrency instead of waiting.
    c = IssuedCard.__table__.c
    async with storage.engine.connect() as connection:
        known = dict(
            (
                await connection.execute(
                    select(c.card_uuid, c.patient_hash).where(c.card_uuid.in_(cards), c.service_id == service_id)
                )
            ).all()
        )
    for row in rows.values():
        row["patient_hash"] = known.get(row["card_uuid"])
    table = Feedback.__table__
    statement = (
        _insert(storage.dialect, table)
        .values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=list(_FEEDBACK_KEY))
        .returning(table.c.id)
    )
    async with storage.sessions.begin() as session:
        stored = len((await session.execute(statement)).all())
    unknown = cards - set(known)
    if unknown:  # the card may have been recorded meanwhile (see record_issued_cards)
        async with storage.engine.begin() as connection:
            await connection.execute(_fill_feedback_patient_hash(sorted(unknown)))
    return FeedbackResult(
        received=len(items), stored=stored, duplicates=len(items) - stored, unknown_cards=len(unknown)
    )


def _recent_override_statement() -> Any:
    """From the patient's overrides (few; index on feedback), not from every card issued to them."""
    f, c = Feedback.__table__.c, IssuedCard.__table__.c
    return (
        select(f.card_uuid, f.outcome_timestamp, f.override_reason, c.red_flag_refs, c.level, c.indicator, c.issued_at)
        .select_from(
            Feedback.__table__.join(
                IssuedCard.__table__, and_(c.card_uuid == f.card_uuid, c.service_id == f.service_id)
            )
        )
        .where(
            f.service_id == bindparam("service_id"),
            f.patient_hash == bindparam("patient_hash"),
            f.outcome == "overridden",
            f.outcome_timestamp >= bindparam("since", type_=f.outcome_timestamp.type),
            f.outcome_timestamp <= bindparam("until", type_=f.outcome_timestamp.type),
            c.patient_hash == bindparam("patient_hash"),
        )
        .order_by(f.outcome_timestamp.desc(), f.id.desc())
        .limit(1)
    )


# Every card-showing hook call runs it: built once (and compiled once per dialect by SQLAlchemy's cache).
_RECENT_OVERRIDE = _recent_override_statement()
_direct_reads: weakref.WeakKeyDictionary[Engine, DirectRead] = weakref.WeakKeyDictionary()  # one per reader


def _recent_override_on(reader: Engine) -> DirectRead:
    found = _direct_reads.get(reader)
    if found is None:
        found = _direct_reads[reader] = DirectRead(_RECENT_OVERRIDE, reader)
    return found


async def recent_override(
    storage: Storage,
    service_id: str,
    patient_id: str,
    now: dt.datetime,
    window: dt.timedelta | None = None,
) -> OverrideMemory | None:
    """The latest `overridden` feedback, stamped within `window` before `now`, on a card this service
    issued for this patient; None if there is none. `window` defaults to CDS_OVERRIDE_WINDOW_DAYS."""
    if window is None:
        window = dt.timedelta(days=storage.settings.override_window_days)
    now = _utc(now)
    params = {
        "service_id": service_id,
        "patient_hash": storage.hash_patient(patient_id),
        "since": now - window,
        "until": now + CLOCK_SKEW,
    }
    if storage.reader is not None:  # SQLite: a direct read, see Storage.reader and direct_read.py
        row = _recent_override_on(storage.reader).first(storage.reader, params)
    else:
        async with storage.engine.connect() as connection:  # a plain connection, no ORM session
            row = (await connection.execute(_RECENT_OVERRIDE, params)).first()
    if row is None:
        return None
    return OverrideMemory(
        card_uuid=row.card_uuid,
        overridden_at=row.outcome_timestamp,
        override_reason=row.override_reason,
        red_flag_refs=tuple(RedFlagRef.from_json(ref) for ref in row.red_flag_refs or []),
        level=row.level,
        indicator=row.indicator,
        issued_at=row.issued_at,
    )
