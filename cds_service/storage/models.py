"""Tables (SQLAlchemy 2 declarative): the cards this service issued, and the feedback on them.

`feedback.card_uuid` deliberately has no foreign key: feedback on a card this database never saw
(issued before storage existed, or when recording it failed) is kept, and simply never matches a
patient. Patient ids are stored only as HMAC-SHA256 (`patient_hash`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OUTCOMES = ("accepted", "overridden")
# What the alert-fatigue rule did to an issued card (NULL: there was no override to consider).
FATIGUE_DOWNGRADED = "downgraded"  # shown as information after an override
FATIGUE_RAISED_AGAIN = "raised-again"  # overridden before, back at full level because of a new red flag
FATIGUE_ACTIONS = (FATIGUE_DOWNGRADED, FATIGUE_RAISED_AGAIN)
ID_LENGTH = 200  # card uuids, service ids and hook instances (CdsRequest.hookInstance allows 200)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in and out, on every backend (SQLite stores no offset: we store UTC).

    A naive value is taken to be UTC. Values are normalised before comparison and uniqueness, so
    "10:05:31+01:00" and "09:05:31Z" are the same instant on SQLite as on PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JsonType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class IssuedCard(Base):
    """One card returned to an EHR, with what the override memory needs to compare against later."""

    __tablename__ = "issued_cards"

    card_uuid: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    hook_instance: Mapped[str] = mapped_column(String(ID_LENGTH))
    patient_hash: Mapped[str] = mapped_column(String(64))  # hex HMAC-SHA256, never the id
    indicator: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(32))
    # [{"reference": "Condition/abc", "concept": "weakness", "date": "2026-11-10" | null}, ...]
    red_flag_refs: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # FATIGUE_ACTIONS, or NULL (revision 0004; NULL on cards issued before it).
    fatigue_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The card's suggestions, to name the one a clinician accepted: [{"id": "<uuid>", "label": "..."}].
    suggestions: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType, nullable=True)

    __table_args__ = (
        Index("ix_issued_cards_service_id_patient_hash", "service_id", "patient_hash"),
        # The governance report (cds_service/report): the cards of a period, grouped and joined to their
        # feedback without a table read.
        Index(
            "ix_issued_cards_issued_at_report",
            "issued_at",
            "service_id",
            "level",
            "patient_hash",
            "fatigue_action",
            "card_uuid",
        ),
        # ... and its distinct patients per service and level, group after group in index order.
        Index(
            "ix_issued_cards_service_id_level_patient_hash_issued_at",
            "service_id",
            "level",
            "patient_hash",
            "issued_at",
        ),
    )


class Feedback(Base):
    """One CDS Hooks feedback entry, stored once however often the EHR sends it."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card_uuid: Mapped[str] = mapped_column(String(ID_LENGTH))  # no FK: see the module docstring
    service_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    outcome: Mapped[str] = mapped_column(String(16))
    # [{"id": "<suggestion uuid>"}], only for "accepted"
    accepted_suggestions: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType, nullable=True)
    # The Coding the clinician chose: {"system": ..., "code": ..., "display": ...}
    override_reason: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_timestamp: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # The issued card's patient_hash, copied here once the card is known (NULL until then; the
    # repository fills it from whichever of card and feedback is stored second).
    patient_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        # Idempotency: the same outcome of the same card at the same instant is one row.
        UniqueConstraint("card_uuid", "service_id", "outcome", "outcome_timestamp"),
        # The override look-up: this patient's overrides for this service, newest first.
        Index(
            "ix_feedback_service_id_patient_hash_outcome_outcome_timestamp",
            "service_id",
            "patient_hash",
            "outcome",
            "outcome_timestamp",
        ),
        CheckConstraint("outcome IN ('accepted', 'overridden')", name="outcome"),
    )
