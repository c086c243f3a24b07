"""The patient's data for the MS back-pain services: prefetch first, then the FHIR server for what
is missing, in stages so that an EHR is not refused for data the decision cannot use.

The prefetch policy below is the one place that says which data the services use: per key its FHIR
query, when it is needed and what its failure means. Discovery's `prefetch` and `usageRequirements`,
the stages and the 412 answers are all derived from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds_service.clinical import valuesets
from cds_service.fhir.policy import FilledQuery, Need, OnFailure, PrefetchKey, PrefetchPolicy
from cds_service.fhir.prefetch import PrefetchData, Select, read_prefetch, unusable_keys
from cds_service.fhir.source import DataUnavailable, MissingDataFetcher, ServerNotAllowed
from cds_service.logs import add_call_log_fields
from cds_service.protocol.models import CdsRequest

WANTED_TYPES = frozenset(
    {
        "Patient",
        "Condition",
        "Observation",
        "ImagingStudy",
        "DiagnosticReport",
        "Procedure",
        "Encounter",
        "MedicationRequest",
        "MedicationStatement",
        "Medication",
    }
)

# Symptoms, exam findings, chief complaints and pain scores; not laboratory or imaging results, which
# are most of a chart's Observations. Not filtered by code: findings are often coded only in the value,
# under a local flowsheet code. Servers that insist on US Core's search combinations (Epic) accept it.
_OBSERVATIONS = "Observation?patient={{context.patientId}}&category=survey,exam,vital-signs"
# Radiology reports: US Core's LOINC category, and HL7 v2 table 0074's RAD / MR (RULES.md §1).
_RADIOLOGY = (
    "http://loinc.org|LP29684-5,"
    "http://terminology.hl7.org/CodeSystem/v2-0074|RAD,"
    "http://terminology.hl7.org/CodeSystem/v2-0074|MR"
)
# SNOMED CT 103693007 "Diagnostic procedure": imaging studies recorded as Procedures.
_DIAGNOSTIC_PROCEDURE = "http://snomed.info/sct|103693007"

PREFETCH_POLICY = PrefetchPolicy(
    keys=(
        PrefetchKey(
            "conditions",
            "Condition?patient={{context.patientId}}",
            Need.ALWAYS,
            OnFailure.REQUIRED,
            "the patient's Conditions",
        ),
        PrefetchKey(
            "observations",
            _OBSERVATIONS,
            Need.ONCE_RELEVANT,
            OnFailure.REQUIRED,
            "Observations of category survey, exam or vital-signs",
        ),
        # Open servers (HAPI, Medplum) hold findings with no category at all, which the qualified search
        # cannot find. Servers that refuse an Observation search with neither category nor code (Epic)
        # leave this key out of the prefetch; read from the server, it is retried with the category.
        PrefetchKey(
            "allObservations",
            "Observation?patient={{context.patientId}}",
            Need.ONCE_RELEVANT,
            OnFailure.OPTIONAL,
            "all Observations (findings stored without a category)",
            when_refused=_OBSERVATIONS,
        ),
        PrefetchKey(
            "imagingStudies",
            "ImagingStudy?patient={{context.patientId}}&modality=" + valuesets.DICOM + "|MR",
            Need.ONCE_RELEVANT,
            OnFailure.REQUIRED,
            "MR ImagingStudies",
        ),
        PrefetchKey(
            "diagnosticReports",
            "DiagnosticReport?patient={{context.patientId}}&category=" + _RADIOLOGY,
            Need.ONCE_RELEVANT,
            OnFailure.OPTIONAL,
            "radiology DiagnosticReports",
        ),
        PrefetchKey(
            "procedures",
            "Procedure?patient={{context.patientId}}",
            Need.ONCE_RELEVANT,
            OnFailure.OPTIONAL,
            "Procedures",
            when_refused="Procedure?patient={{context.patientId}}&category=" + _DIAGNOSTIC_PROCEDURE,
        ),
        PrefetchKey(
            "encounter",
            "Encounter/{{context.encounterId}}",
            Need.ONCE_RELEVANT,
            OnFailure.OPTIONAL,
            "the Encounter of context.encounterId (its reason for visit)",
        ),
        PrefetchKey(
            "medications",
            "MedicationRequest?patient={{context.patientId}}",
            Need.ONCE_RELEVANT,
            OnFailure.OPTIONAL,
            "MedicationRequests (without them, NSAID response is reported as not assessed)",
        ),
        PrefetchKey(
            "medicationStatements",
            "MedicationStatement?patient={{context.patientId}}",
            Need.ONCE_RELEVANT,
            OnFailure.OPTIONAL,
            "MedicationStatements",
        ),
    ),
    relevant_when="once MS is found",
)


def prefetch_templates() -> dict[str, str]:
    """The discovery `prefetch`: reads and plain searches that common servers support."""
    return PREFETCH_POLICY.templates()


@dataclass(frozen=True)
class _HookCall:
    """What one hook call asks of the data layer: its request, patient, pre-filter and filled queries."""

    request: CdsRequest
    patient_id: str
    select: Select | None
    queries: dict[str, FilledQuery]  # the keys this request can fill (no encounterId: no encounter key)

    def keys(self, policy: PrefetchPolicy, need: Need) -> tuple[str, ...]:
        return tuple(name for name in policy.names(need) if name in self.queries)


@dataclass(frozen=True)
class PatientData:
    resources: list[Any]
    medications_assessed: bool
    missing_optional: frozenset[str] = frozenset()  # optional keys decided without


class PatientDataLoader:
    def __init__(self, fetcher: MissingDataFetcher, policy: PrefetchPolicy = PREFETCH_POLICY):
        self.policy = policy
        self.templates = policy.templates()
        self.usage_requirements = policy.usage_requirements()
        self._fetcher = fetcher

    async def _fetch_missing(self, data: PrefetchData, keys: tuple[str, ...], call: _HookCall) -> None:
        """Read the unusable ones of `keys` from the FHIR server, all at once; failures stay unavailable."""
        missing = [k for k in keys if k in data.unavailable and k not in data.fetch_attempted]
        if not missing:
            return
        data.fetch_attempted.update(missing)
        queries = {k: call.queries[k].query for k in missing}
        when_refused = {k: q for k in missing if (q := call.queries[k].when_refused) is not None}
        request = call.request
        token = request.fhirAuthorization.access_token.get_secret_value() if request.fhirAuthorization else None
        failures: dict[str, str] = {}
        try:
            fetched = await self._fetcher.fetch(queries, request.fhirServer, token, when_refused=when_refused)
        except DataUnavailable as exc:
            fetched, failures = exc.partial, exc.reasons
        except ServerNotAllowed:
            if any(self.policy.key(k).on_failure is OnFailure.REQUIRED for k in missing):
                raise  # 403: the decision needs data only that server could give
            fetched, failures = {}, {k: "fhirServer is not on the allowlist" for k in missing}
        for key, reason in failures.items():
            if key in data.unavailable:
                data.unavailable[key] = f"{data.unavailable[key]}; {reason}"
        readable = [k for k in missing if k in fetched]
        from_server = read_prefetch(fetched, readable, call.patient_id, WANTED_TYPES, call.select)
        data.skipped.update(from_server.skipped)
        for key in readable:
            if key in from_server.unavailable:
                data.unavailable[key] = f"{data.unavailable[key]}; from the FHIR server: {from_server.unavailable[key]}"
            else:
                data.resources[key] = from_server.resources[key]
                del data.unavailable[key]

    def _stand_in_for_refused(self, data: PrefetchData, keys: list[str], call: _HookCall) -> None:
        """An optional key the client left out whose narrower form (`when_refused`) is another key it
        did send: the client's server refused the key's search (Epic leaves such keys out), and reading
        it from the server would be refused too and then retried as the key already in hand. The sent
        key stands in for it: no FHIR reads (two round trips) spent on data the call already has."""
        queries = {k: f.query for k, f in call.queries.items() if k in data.resources}
        stood_in: dict[str, str] = {}
        for key in keys:
            narrower = call.queries[key].when_refused
            if data.unavailable.get(key) != "not sent" or narrower is None:
                continue
            if self.policy.key(key).on_failure is not OnFailure.OPTIONAL:
                continue
            stand_in = next((k for k, q in queries.items() if q == narrower), None)
            if stand_in is not None:
                del data.unavailable[key]
                data.resources[key] = []  # its narrower form's resources are under `stand_in`
                stood_in[key] = stand_in
        if stood_in:
            add_call_log_fields(stood_in=stood_in)

    def _require(self, data: PrefetchData, keys: tuple[str, ...]) -> None:
        """Raise DataUnavailable (412) for the required ones of `keys` that are still unusable."""
        required = [k for k in keys if self.policy.key(k).on_failure is OnFailure.REQUIRED]
        unavailable = {k: data.unavailable[k] for k in required if k in data.unavailable}
        if unavailable:
            raise DataUnavailable(unavailable)

    def _required_missing(self, data: PrefetchData, keys: tuple[str, ...]) -> bool:
        return any(k in data.unavailable and self.policy.key(k).on_failure is OnFailure.REQUIRED for k in keys)

    async def load(
        self,
        request: CdsRequest,
        patient_id: str,
        has_ms: Callable[[list[Any]], bool],
        select: Select | None = None,
    ) -> PatientData | None:
        """The patient's resources, or None when the first keys (the Conditions) show no MS (`has_ms` decides).

        The ALWAYS keys are read first; the others (most of a long record) only once MS is found, so
        a patient without MS (most patients) costs little. Keys the client did not usably send are read
        from the FHIR server; required ones that cannot be had raise DataUnavailable (412), optional
        ones are done without. `select` declines resources no rule can use:
        see clinical/relevance.py."""
        context = {**request.context, "patientId": patient_id}
        call = _HookCall(request, patient_id, select, self.policy.fill(context))
        first, once_relevant = call.keys(self.policy, Need.ALWAYS), call.keys(self.policy, Need.ONCE_RELEVANT)
        data = read_prefetch(request.prefetch, first, patient_id, WANTED_TYPES, select)
        if self._required_missing(data, first):
            # Nothing can be decided without the first keys: read every missing key in one concurrent
            # round trip rather than one stage after another (the EHR's time budget is ~500 ms).
            data.unavailable.update(unusable_keys(request.prefetch, once_relevant))
            await self._fetch_missing(data, first + once_relevant, call)
        else:
            await self._fetch_missing(data, first, call)
        self._require(data, first)
        if not has_ms(data.all_resources(first)):
            return None
        not_yet_read = [k for k in once_relevant if k not in data.fetch_attempted]
        data.add(read_prefetch(request.prefetch, not_yet_read, patient_id, WANTED_TYPES, select))
        self._stand_in_for_refused(data, not_yet_read, call)
        await self._fetch_missing(data, once_relevant, call)
        self._require(data, once_relevant)
        missing = frozenset(k for k in first + once_relevant if k in data.unavailable)
        if missing:
            # On the call's log line: key names and our own reasons only, never identifiers or content.
            add_call_log_fields(missing_optional={k: data.unavailable[k] for k in sorted(missing)})
        return PatientData(
            data.all_resources(first + once_relevant),
            medications_assessed="medications" not in data.unavailable,
            missing_optional=missing,
        )
