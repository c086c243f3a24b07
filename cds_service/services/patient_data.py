"""The patient's data for the MS back-pain services: prefetch first, then the FHIR server for what
is missing, required in stages so that an EHR is not refused for data the decision cannot use.

Conditions are always needed (they carry MS); Observations and ImagingStudies once MS is found; the
medication lists are optional (without them, NSAID response is reported as not assessed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds_service.clinical import valuesets
from cds_service.fhir.prefetch import PrefetchData, Select, read_prefetch, unusable_keys
from cds_service.fhir.source import DataUnavailable, MissingDataFetcher
from cds_service.protocol.models import CdsRequest

WANTED_TYPES = frozenset(
    {"Patient", "Condition", "Observation", "ImagingStudy", "MedicationRequest", "MedicationStatement", "Medication"}
)
REQUIRED_ALWAYS = ("conditions",)
REQUIRED_WITH_MS = ("observations", "imagingStudies")
OPTIONAL = ("medications", "medicationStatements")


def prefetch_templates() -> dict[str, str]:
    """The discovery `prefetch`: plain FHIR searches that common servers (and Medplum) support."""
    return {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        # Symptoms, exam findings, chief complaints and pain scores; not laboratory or imaging results,
        # which are most of a chart's Observations. Not filtered by code: findings are often coded
        # only in the value, under a local flowsheet code.
        "observations": "Observation?patient={{context.patientId}}&category=survey,exam,vital-signs",
        "imagingStudies": "ImagingStudy?patient={{context.patientId}}&modality=" + valuesets.DICOM + "|MR",
        "medications": "MedicationRequest?patient={{context.patientId}}",
        "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
    }


@dataclass(frozen=True)
class _Call:
    request: CdsRequest
    patient_id: str
    select: Select | None


@dataclass(frozen=True)
class PatientData:
    resources: list[Any]
    medications_assessed: bool


class PatientDataLoader:
    def __init__(self, fetcher: MissingDataFetcher):
        self.templates = prefetch_templates()
        self._fetcher = fetcher

    async def _fetch_missing(self, data: PrefetchData, keys: tuple[str, ...], call: _Call) -> None:
        """Read the unusable ones of `keys` from the FHIR server, all at once; failures stay unavailable."""
        missing = [k for k in keys if k in data.unavailable and k not in data.fetch_attempted]
        if not missing:
            return
        data.fetch_attempted.update(missing)
        queries = {k: self.templates[k].replace("{{context.patientId}}", call.patient_id) for k in missing}
        request = call.request
        token = request.fhirAuthorization.access_token.get_secret_value() if request.fhirAuthorization else None
        failures: dict[str, str] = {}
        try:
            fetched = await self._fetcher.fetch(queries, request.fhirServer, token)
        except DataUnavailable as exc:
            fetched, failures = exc.partial, exc.reasons
        for key, reason in failures.items():
            data.unavailable[key] = f"{data.unavailable[key]}; {reason}"
        readable = [k for k in missing if k in fetched]
        again = read_prefetch(fetched, readable, call.patient_id, WANTED_TYPES, call.select)
        for key in readable:
            if key in again.unavailable:
                data.unavailable[key] = f"{data.unavailable[key]}; from the FHIR server: {again.unavailable[key]}"
            else:
                data.resources[key] = again.resources[key]
                del data.unavailable[key]

    async def _require(self, data: PrefetchData, keys: tuple[str, ...], call: _Call) -> None:
        """Make sure `keys` are usable (fetching them if needed), else raise DataUnavailable (412)."""
        await self._fetch_missing(data, keys, call)
        unavailable = {k: data.unavailable[k] for k in keys if k in data.unavailable}
        if unavailable:
            raise DataUnavailable(unavailable)

    async def load(
        self,
        request: CdsRequest,
        patient_id: str,
        has_ms: Callable[[list[Any]], bool],
        select: Select | None = None,
    ) -> PatientData | None:
        """The patient's resources, or None when the Conditions show no MS (`has_ms` decides).

        Conditions are read first; the other keys (most of a long record) only once MS is found,
        so a patient without MS (most patients) costs little. `select` declines resources no rule
        can use (clinical/relevance.py)."""
        call = _Call(request, patient_id, select)
        later = REQUIRED_WITH_MS + OPTIONAL
        data = read_prefetch(request.prefetch, REQUIRED_ALWAYS, patient_id, WANTED_TYPES, select)
        if "conditions" in data.unavailable:
            # Nothing can be decided without Conditions: read every missing key in one concurrent
            # round trip rather than one stage after another (the EHR's time budget is ~500 ms).
            data.unavailable.update(unusable_keys(request.prefetch, later))
            await self._fetch_missing(data, REQUIRED_ALWAYS + later, call)
        await self._require(data, REQUIRED_ALWAYS, call)
        if not has_ms(data.resources["conditions"]):
            return None
        unread = [k for k in later if k not in data.fetch_attempted]
        data.add(read_prefetch(request.prefetch, unread, patient_id, WANTED_TYPES, select))
        await self._fetch_missing(data, later, call)
        await self._require(data, REQUIRED_WITH_MS, call)
        return PatientData(
            data.all_resources(REQUIRED_ALWAYS + later), medications_assessed="medications" not in data.unavailable
        )
