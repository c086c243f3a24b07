"""Storage configuration, from the environment (prefix `CDS_`).

`CDS_DATABASE_URL` takes a sync or async SQLAlchemy URL; the service always talks to the database
through an async driver (aiosqlite, psycopg 3 in async mode) and runs migrations through the sync
driver of the same database (see `db.py`).

`CDS_PATIENT_HASH_KEY` is the secret of the HMAC-SHA256 that turns a patient id into the value
stored in the database: patient ids are never stored in clear. It must be set in every deployment
and kept stable (changing it makes earlier rows unmatchable, so overrides are "forgotten"). Without
it the service runs on a fixed development key and logs a warning at start-up.
"""

from __future__ import annotations

import logging

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("cds_service.storage")

DEVELOPMENT_PATIENT_HASH_KEY = "development-only-patient-hash-key-do-not-use-in-production"
MIN_KEY_LENGTH = 32


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_", env_file=None, extra="ignore")

    # A file next to the working directory by default; PostgreSQL in production, e.g.
    # CDS_DATABASE_URL=postgresql+psycopg://cds@db.example.org:5432/cds
    database_url: str = "sqlite+aiosqlite:///./cds-service.db"
    # Secret for HMAC-SHA256(patient id). Generate with `openssl rand -hex 32`.
    patient_hash_key: SecretStr = SecretStr(DEVELOPMENT_PATIENT_HASH_KEY)
    # How long a clinician's override of a card is remembered for the same patient.
    override_window_days: int = Field(default=30, ge=1, le=3650)
    # Run `alembic upgrade head` when the app starts (PostgreSQL: serialised by an advisory lock).
    migrate_on_startup: bool = True

    # Bounds on every wait for the database (a frozen or unreachable server never holds a hook call):
    # PostgreSQL connect timeout (whole seconds, libpq's minimum is 2) and server-side statement timeout.
    db_connect_timeout_seconds: int = Field(default=2, ge=2, le=60)
    db_statement_timeout_ms: int = Field(default=2000, ge=100, le=600_000)
    # Waiting for a free pooled connection.
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # SQLite: how long a writer waits for another writer's lock.
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # The override look-up on the hook path gives up after this long: the card is then served
    # without the alert-fatigue memory (counted in cds_storage_fallbacks_total).
    db_read_timeout_ms: int = Field(default=150, ge=10, le=60_000)
    # Writes (issued cards, feedback) and the readiness probe give up after this long.
    db_write_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # After a database failure, the hook path skips the database for this long (then tries again).
    db_retry_after_seconds: float = Field(default=2.0, ge=0, le=300)

    @field_validator("patient_hash_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_KEY_LENGTH} characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _not_in_memory(cls, value: str) -> str:
        if value.startswith("sqlite") and (":memory:" in value or value.rstrip("/").endswith(":")):
            raise ValueError("an in-memory SQLite database cannot be migrated and shared; use a file")
        return value

    @property
    def uses_development_key(self) -> bool:
        return self.patient_hash_key.get_secret_value() == DEVELOPMENT_PATIENT_HASH_KEY

    def warn_if_insecure(self) -> None:
        if self.uses_development_key:
            log.warning(
                "CDS_PATIENT_HASH_KEY is not set: patient ids are hashed with the public development key. "
                f"Set a secret of at least {MIN_KEY_LENGTH} characters in every real deployment.",
                extra={"event": "storage_config", "reason": "development_patient_hash_key"},
            )
