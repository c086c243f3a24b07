"""Client-authentication settings, from the environment (prefix `CDS_AUTH_`).

Example:
    CDS_AUTH_MODE=required
    CDS_AUTH_PUBLIC_BASE_URL=https://cds.example.org
    CDS_AUTH_TRUSTED_ISSUERS='[{"iss": "https://ehr.example.com/", "jwks_url": "https://ehr.example.com/jwks"}]'

Only asymmetric signature algorithms can be configured: `none` and HMAC (`HS*`) are refused at
start-up (CDS Hooks 2.0, "JWT Signing Algorithm"), as is anything this service cannot verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every algorithm this service can verify: RSA (PKCS#1 v1.5 and PSS) and ECDSA on the NIST curves.
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
DEFAULT_ALGORITHMS = ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512"]
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def check_key_url(url: str) -> str:
    """A JWKS / jku URL: absolute https (plain http only on the loopback interface, for development)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.fragment or parts.username or parts.password:
        raise ValueError("must be an absolute URL without credentials or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise ValueError("must use https")


class TrustedIssuer(BaseModel):
    """One CDS Client (or its identity provider) and where its public keys are.

    `jwks_url` / `jwks_file`: the JWK Set agreed out-of-band (at most one of the two).
    `jku_allowlist`: JWK Set URLs this issuer may name in a token's `jku` header; a `jku` is used only
    when it equals one of them exactly, otherwise the token is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1)
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jku_allowlist: list[str] = Field(default_factory=list)

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_key_url(value)

    @field_validator("jku_allowlist")
    @classmethod
    def _jku(cls, value: list[str]) -> list[str]:
        return [check_key_url(u) for u in value]

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedIssuer:
        if self.jwks_url and self.jwks_file:
            raise ValueError(f"issuer {self.iss!r}: give jwks_url or jwks_file, not both")
        if not (self.jwks_url or self.jwks_file or self.jku_allowlist):
            raise ValueError(f"issuer {self.iss!r}: needs jwks_url, jwks_file or a jku_allowlist")
        return self


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDS_AUTH_", env_file=None, extra="ignore")

    # "required": every service call needs a valid client JWT. "disabled": development only.
    mode: Literal["required", "disabled"] = "required"
    trusted_issuers: list[TrustedIssuer] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    clock_skew_seconds: int = Field(default=60, ge=0, le=300)
    max_token_lifetime_seconds: int = Field(default=3600, gt=0, le=86400)
    jwks_cache_seconds: int = Field(default=300, ge=1, le=86400)
    # The base URL clients call (e.g. https://cds.example.org): the expected `aud` is
    # {public_base_url}/cds-services/{id}. Unset: derived from the request (Host header), which is
    # only right without a proxy in front; set it in production.
    public_base_url: str | None = None

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one signature algorithm is needed")
        for alg in value:
            if alg.lower() == "none":
                raise ValueError("the 'none' algorithm is never accepted")
            if alg.upper().startswith("HS"):
                raise ValueError(f"symmetric algorithm {alg!r} is never accepted (CDS Hooks forbids HMAC)")
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"unsupported algorithm {alg!r}; choose from {sorted(SUPPORTED_ALGORITHMS)}")
        return list(dict.fromkeys(value))

    @field_validator("trusted_issuers")
    @classmethod
    def _unique_issuers(cls, value: list[TrustedIssuer]) -> list[TrustedIssuer]:
        seen = [i.iss for i in value]
        if len(seen) != len(set(seen)):
            raise ValueError("each iss may be listed once")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be an absolute http(s) URL without query or fragment")
        return value.rstrip("/")
