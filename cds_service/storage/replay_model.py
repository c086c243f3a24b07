"""The `seen_jti` table: client-token ids (`jti`) already accepted, shared by every replica.

Used by `cds_service.security.replay_shared.DatabaseReplayCache` when no Redis is configured. One
row per (issuer, jti), kept until the token could no longer be valid (`expires_at` = its `exp` plus
the clock skew); expired rows are deleted opportunistically. It registers on the same `Base`
metadata as the other tables, so Alembic's model-vs-migration comparison sees it once this module
is imported (`cds_service.storage` should import it; see the revision 0002).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cds_service.storage.models import Base, UtcDateTime

JTI_LENGTH = 256  # cds_service.security.jwt_auth.MAX_ID_CHARS: longer jti values are refused before this


class SeenJti(Base):
    """One accepted client token, remembered while it could still be replayed."""

    __tablename__ = "seen_jti"

    # The issuer is one of the configured trusted issuers (a URL of any length): Text, not String(n).
    iss: Mapped[str] = mapped_column(Text, primary_key=True)
    jti: Mapped[str] = mapped_column(String(JTI_LENGTH), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())

    # The clean-up deletes by expiry: without the index it would scan the table.
    __table_args__ = (Index("ix_seen_jti_expires_at", "expires_at"),)
