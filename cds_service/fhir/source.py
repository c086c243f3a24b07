"""Where patient data comes from: the request's prefetch first, then (for missing keys) a fallback.

The fallback is the seam for reading from the EHR's FHIR server. The default here has no FHIR
client, so missing data ends in `DataUnavailable`, which the protocol layer answers with 412.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class DataUnavailable(Exception):
    """Data the decision needs could not be had (spec: answer 412 Precondition Failed)."""

    def __init__(self, reasons: Mapping[str, str], partial: Mapping[str, Any] | None = None):
        self.reasons = dict(reasons)
        self.partial = dict(partial or {})  # what a fetcher did read before others failed
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.reasons.items()))


class ServerNotAllowed(Exception):
    """The request names a FHIR server that is not on the allowlist: nothing is sent to it."""


class MissingDataFetcher(Protocol):
    """Fetches prefetch keys the EHR did not (usably) send; returns key -> raw FHIR JSON value.

    `when_refused` gives, for some keys, the narrower query to send when the server refuses the
    first one as a search it does not allow (e.g. an Observation search without a category)."""

    async def fetch(
        self,
        queries: Mapping[str, str],
        fhir_server: str | None,
        access_token: str | None,
        when_refused: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...


class NoFhirServerFetcher:
    """Reads nothing: missing data stays missing, so the service answers 412 (or, for optional
    data, decides without it)."""

    async def fetch(
        self,
        queries: Mapping[str, str],
        fhir_server: str | None,
        access_token: str | None,
        when_refused: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        raise DataUnavailable({key: "not in prefetch, and reading the FHIR server is not enabled" for key in queries})
