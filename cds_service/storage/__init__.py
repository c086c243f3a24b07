"""Persistence: cards issued, CDS Hooks feedback on them, and the override memory read from both.

Wiring: `create_app(storage=StorageSettings(...))` opens it at start-up (`open_storage`) and closes it
at shutdown (cds_service/runtime.py). Migrations: `upgrade_database(url)`.
"""

from __future__ import annotations

from cds_service.storage import replay_model as _replay_model  # noqa: F401  (registers seen_jti)
from cds_service.storage.db import PatientHasher, Storage, open_storage
from cds_service.storage.migrations import upgrade_database
from cds_service.storage.repository import (
    CardRecord,
    FeedbackRecord,
    FeedbackResult,
    OverrideMemory,
    RedFlagRef,
    recent_override,
    record_feedback,
    record_issued_cards,
)
from cds_service.storage.settings import StorageSettings

__all__ = [
    "CardRecord",
    "FeedbackRecord",
    "FeedbackResult",
    "OverrideMemory",
    "PatientHasher",
    "RedFlagRef",
    "Storage",
    "StorageSettings",
    "open_storage",
    "record_feedback",
    "record_issued_cards",
    "recent_override",
    "upgrade_database",
]
