"""A stand-in for the FHIR server in data-layer tests: answers from a mapping, records what it was asked."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from cds_service.fhir.source import DataUnavailable


class RecordingFetcher:
    """Answers from `values` (prefetch key -> raw value); a key it has not is DataUnavailable. Records each
    call's keys (`calls`), every query (`queries`) and every narrower form offered (`when_refused`)."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        self.values = dict(values or {})
        self.calls: list[list[str]] = []
        self.queries: dict[str, str] = {}
        self.when_refused: dict[str, str] = {}

    async def fetch(
        self,
        queries: Mapping[str, str],
        fhir_server: str | None,
        access_token: str | None,
        when_refused: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        self.calls.append(sorted(queries))
        self.queries.update(queries)
        self.when_refused.update(when_refused or {})
        found = {key: copy.deepcopy(self.values[key]) for key in queries if key in self.values}
        if len(found) < len(queries):
            raise DataUnavailable({key: "not on the server" for key in queries if key not in found}, partial=found)
        return found
