"""All configuration, from the environment (prefix `CDS_`), in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_ADMIN_TOKEN_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_", env_file=None, extra="ignore")

    # Request limits: a CDS Hooks body with 10,000 prefetched resources is ~10-15 MB.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_json_depth: int = Field(default=64, ge=8, le=512)

    # Clinical windows (RULES.md defaults).
    lookback_days: int = Field(default=90, ge=1)
    recent_mri_days: int = Field(default=90, ge=1)
    nsaid_trial_days: int = Field(default=14, ge=1)

    # Card content: the reviewed wording in the repository's cards/ folder (or the copy in the wheel).
    cards_dir: Path | None = None
    # Optional SMART app to link from the card (e.g. an MS pain assessment app); none by default.
    smart_app_url: str | None = None
    smart_app_label: str = "Open MS pain assessment"

    # Reading missing prefetch from the EHR's FHIR server: only servers listed here (base URLs, or bare
    # host names) ever receive a request or a token. Empty: never read, answer 412 instead.
    # Example: CDS_FHIR_SERVER_ALLOWLIST='["https://ehr.example.org/fhir"]'
    fhir_server_allowlist: list[str] = Field(default_factory=list)
    fhir_deadline_seconds: float = Field(default=1.5, gt=0, le=30)
    fhir_max_resources: int = Field(default=5000, gt=0)

    # Browser-based CDS clients: origins allowed by CORS, e.g. '["https://sandbox.cds-hooks.org"]'.
    cors_allow_origins: list[str] = Field(default_factory=list)

    # Shared replay cache for client JWT ids across replicas (SET NX with expiry). Unset: the
    # database's seen_jti table. Example: CDS_REDIS_URL=redis://redis:6379/0
    redis_url: SecretStr | None = None
    redis_key_prefix: str = "cds:replay:"

    # Issued cards are written in batches after the answer: how long the writer waits to gather a
    # batch (services/card_memory.py). 0: write each call's cards at once.
    card_write_linger_ms: int = Field(default=50, ge=0, le=5000)

    # The governance report (GET /admin/report, /admin/report.json): off (404) unless this secret is set.
    # A Bearer token of its own, never an EHR's JWT. Generate with `openssl rand -hex 32`.
    admin_token: SecretStr | None = None

    log_level: str = "INFO"
    # Freeze the objects alive at start-up out of the cyclic GC's reach (see gcpause.py). Tests that
    # start many apps in one process turn it off: frozen objects are never collected.
    gc_freeze_at_startup: bool = True

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_admin_token_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # CDS_ADMIN_TOKEN= (empty): the report stays off

    @field_validator("admin_token")
    @classmethod
    def _admin_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"admin_token must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
        return value
