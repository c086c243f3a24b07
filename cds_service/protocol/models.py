"""CDS Hooks 2.0 request, response and discovery models (pydantic v2).

Requests tolerate unknown fields (EHRs send extensions); responses are strict, so a card we build
that breaks the specification fails in our tests, not in the EHR.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Matched with fullmatch: `$` alone would also take a trailing newline.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
FHIR_REFERENCE = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}")
# CDS Hooks: hookInstance is "a universally unique identifier (UUID) for this particular hook call".
UUID_TEXT = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# A bearer token (RFC 6750 b64token, and the opaque tokens EHRs issue): visible ASCII only, so it
# can go into an Authorization header as it is.
BEARER_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
MAX_URL_LENGTH = 2048


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- request ----------------------------------------------------------------------------------


class FhirAuthorization(_Tolerant):
    """The OAuth 2.0 bearer token the EHR lends the service for its FHIR server."""

    access_token: SecretStr = Field(min_length=1)
    token_type: str
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    @field_validator("access_token")
    @classmethod
    def _token_characters(cls, value: SecretStr) -> SecretStr:
        if not BEARER_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("access_token must be visible ASCII characters, at most 8192")
        return value

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be 'Bearer'")
        return value


class CdsRequest(_Tolerant):
    """The body of a service call (CDS Hooks 2.0 "Calling a CDS Service")."""

    hook: str = Field(min_length=1, max_length=200)
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @field_validator("hookInstance")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if not UUID_TEXT.fullmatch(value):
            raise ValueError("hookInstance must be a UUID, e.g. d1577c69-dfbe-44ad-ba6d-3e05e953b2ea")
        return value

    @field_validator("fhirServer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_http_url(value):
            raise ValueError("fhirServer must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _server_with_token(self) -> CdsRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


def _is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, of visible ASCII, that urllib can take apart."""
    if len(value) > MAX_URL_LENGTH or not re.fullmatch(r"https?://[\x21-\x7e]+", value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return False
    return bool(parts.hostname) and not any(c in value for c in '<>"\\^`{|}')


def _reference(value: str) -> str:
    if not FHIR_REFERENCE.fullmatch(value):
        raise ValueError("must be a FHIR reference of the form ResourceType/id")
    return value


def _fhir_id(value: str) -> str:
    if not FHIR_ID.fullmatch(value):
        raise ValueError("must be a FHIR id (letters, digits, '-' and '.', at most 64)")
    return value


class PatientViewContext(_Tolerant):
    """Context of the `patient-view` hook."""

    userId: str
    patientId: str
    encounterId: str | None = None

    @field_validator("userId")
    @classmethod
    def _user(cls, value: str) -> str:
        return _reference(value)

    @field_validator("patientId")
    @classmethod
    def _patient(cls, value: str) -> str:
        return _fhir_id(value)

    @field_validator("encounterId")
    @classmethod
    def _encounter(cls, value: str | None) -> str | None:
        return None if value is None else _fhir_id(value)


class OrderSignContext(PatientViewContext):
    """Context of the `order-sign` hook: every unsigned order of the session is in `draftOrders`."""

    draftOrders: dict[str, Any]

    @field_validator("draftOrders")
    @classmethod
    def _bundle(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A Bundle without `type` is accepted: the CDS Hooks sandbox sends them that way.
        if value.get("resourceType") != "Bundle":
            raise ValueError("draftOrders must be a FHIR Bundle")
        if not isinstance(value.get("entry", []), list):
            raise ValueError("draftOrders.entry must be a list")
        return value


class OrderSelectContext(OrderSignContext):
    """Context of the `order-select` hook: `selections` name the newly selected drafts."""

    selections: list[str] = Field(min_length=1)

    @field_validator("selections")
    @classmethod
    def _references(cls, value: list[str]) -> list[str]:
        return [_reference(v) for v in value]


# --- response ---------------------------------------------------------------------------------


class Coding(_Strict):
    system: str | None = None
    code: str = Field(min_length=1)
    display: str | None = None


class Source(_Strict):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Strict):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _payload(self) -> Action:
        if self.type in ("create", "update") and not self.resource:
            raise ValueError(f"a {self.type} action carries a resource")
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action names resourceId")
        return self


class Suggestion(_Strict):
    label: str = Field(min_length=1)
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Strict):
    label: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Strict):
    uuid: str | None = None
    summary: str = Field(min_length=1, max_length=139)  # the spec: a "<140-character summary"
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _spec_rules(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required when suggestions are present")
        if any(not reason.display for reason in self.overrideReasons or []):
            raise ValueError("every override reason has a display")
        return self


class CdsResponse(_Strict):
    cards: list[Card]
    systemActions: list[Action] | None = None


class ServiceDescriptor(_Strict):
    """One entry of the discovery response."""

    hook: str
    id: str = Field(pattern=r"^[A-Za-z0-9\-_.]+$")
    title: str | None = None
    description: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class DiscoveryResponse(_Strict):
    services: list[ServiceDescriptor]


class ErrorBody(_Strict):
    """Every 4xx/5xx answer: a stable machine-readable `error` code and a human `message`."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None
