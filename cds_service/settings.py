"""All configuration, from the environment (prefix `CDS_`), in one place.

Settings classes are built with `load_settings(cls)`: a bad value raises `ConfigurationError`,
whose message names the environment variable (`CDS_PATIENT_HASH_KEY: must be at least 32
characters`) and never the value (it may be a secret) nor pydantic's field name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigurationError(ValueError):
    """A `CDS_*` environment variable has an unusable value (the message names it, never its value)."""


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """`cls()` from the environment, or `ConfigurationError` naming the variables at fault."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    try:
        return cls()
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        problems = [f"{_variable(prefix, e['loc'])}: {_message(e)}" for e in errors]
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    except SettingsError as exc:  # a JSON-valued variable that is not JSON
        match = re.search(r'field "([^"]+)"', str(exc))
        name = (prefix + match.group(1)).upper() if match else f"{prefix}*"
        raise ConfigurationError(f"invalid configuration: {name}: not valid JSON") from None


def _variable(prefix: str, loc: Sequence[Any]) -> str:
    if not loc:
        return f"{prefix}*"
    name = (prefix + str(loc[0])).upper()
    inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    return name + (f" (at {inner})" if inner else "")


def _message(error: Any) -> str:
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


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
    # One FHIR answer page larger than this is not read (streamed; the read stops at the cap).
    fhir_max_page_bytes: int = Field(default=4 * 1024 * 1024, gt=0)

    # Browser-based CDS clients: origins allowed by CORS, e.g. '["https://sandbox.cds-hooks.org"]'.
    cors_allow_origins: list[str] = Field(default_factory=list)

    # Shared replay cache for client JWT ids across replicas (SET NX with expiry). Unset: the
    # database's seen_jti table. Example: CDS_REDIS_URL=redis://redis:6379/0
    redis_url: SecretStr | None = None
    redis_key_prefix: str = "cds:replay:"
    # Connect and read timeout of each Redis command; a replay check gives up after twice this.
    redis_timeout_seconds: float = Field(default=1.0, gt=0, le=10)

    # Overload: above this many hook calls in flight in one worker, answer 503 with
    # Retry-After at once (protocol/load_shedding.py) rather than queue past the EHR's time budget.
    max_in_flight_calls: int = Field(default=32, ge=1, le=10_000)
    shed_retry_after_seconds: int = Field(default=1, ge=1, le=60)
    # A client that has not sent its whole request body within this many seconds gets 408 and the
    # connection is closed (protocol/client_io.py).
    body_read_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    # Issued cards are written in batches after the answer: how long the writer waits to gather a
    # batch (services/card_memory.py). 0: write each call's cards at once.
    card_write_linger_ms: int = Field(default=50, ge=0, le=5000)

    # The governance report (GET /admin/report, /admin/report.json): off (404) unless this secret is set.
    # A Bearer token of its own, never an EHR's JWT. Generate with `openssl rand -hex 32`.
    admin_token: SecretStr | None = None

    log_level: str = "INFO"

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
