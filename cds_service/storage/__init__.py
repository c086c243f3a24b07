"""Persistence: cards issued, CDS Hooks feedback on them, and the override memory read from both.

Wiring: `install_storage(app, StorageSettings())` after `create_app()`; the storage is then
`app.state.storage` while the app runs. Migrations: `upgrade_database(url)`.
"""

from __future__ import annotations

from cds_service.storage import replay_model as _replay_model  # noqa: F401  (registers seen_jti)
from cds_service.storage.db import PatientHasher, Storage, install_storage, open_storage
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
    "install_storage",
    "open_storage",
    "record_feedback",
    "record_issued_cards",
    "recent_override",
    "upgrade_database",
]
