"""The `patient-view` service: MS + back pain -> possible spinal cord involvement, spinal MRI advice.

It composes the layers: prefetch (or the missing-data fetcher) -> facts -> decision -> card.
Data is required in stages, so that an EHR is not refused for data the decision cannot use:
Conditions always (they carry MS); Observations and ImagingStudies once MS is found; the
medication list is optional (without it, NSAID response is reported as not assessed).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

from pydantic import BaseModel

from cds_service.cards.builder import CardContext, build_card
from cds_service.clinical import valuesets
from cds_service.clinical.decision import decide
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.facts import RuleSettings
from cds_service.clinical.multiple_sclerosis import ms_findings
from cds_service.fhir.prefetch import PrefetchData, read_prefetch
from cds_service.fhir.source import DataUnavailable, MissingDataFetcher
from cds_service.protocol.models import CdsRequest, CdsResponse, PatientViewContext, ServiceDescriptor

log = logging.getLogger(__name__)

SERVICE_ID = "ms-back-pain-patient-view"
WANTED_TYPES = frozenset(
    {"Patient", "Condition", "Observation", "ImagingStudy", "MedicationRequest", "MedicationStatement", "Medication"}
)


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


REQUIRED_ALWAYS = ("conditions",)
REQUIRED_WITH_MS = ("observations", "imagingStudies")
OPTIONAL = ("medications", "medicationStatements")


class MsBackPainPatientView:
    context_model = PatientViewContext

    def __init__(
        self,
        fetcher: MissingDataFetcher,
        clock: Callable[[], dt.datetime],
        card_content: dict[str, Any],
        rules: RuleSettings = RuleSettings(),
        smart_app: tuple[str, str] | None = None,
    ):
        self.templates = prefetch_templates()
        self.descriptor = ServiceDescriptor(
            hook="patient-view",
            id=SERVICE_ID,
            title="MS back pain: possible spinal cord involvement",
            description=(
                "When a patient with multiple sclerosis has a back pain complaint, flags possible spinal cord "
                "involvement, graded by red flags (new weakness, balance, bladder or sensory change) and cord features, "
                "and suggests a cervical and thoracic spinal MRI as draft orders."
            ),
            prefetch=self.templates,
            usageRequirements=(
                "Needs the patient's Conditions; once MS is found, also Observations and ImagingStudies. "
                "Missing prefetch that cannot be read otherwise is answered with HTTP 412."
            ),
        )
        self._fetcher, self._clock, self._content = fetcher, clock, card_content
        self._rules, self._smart_app = rules, smart_app

    async def _fetch_missing(self, data: PrefetchData, keys: tuple[str, ...], request: CdsRequest, patient_id: str) -> None:
        """Read the unusable ones of `keys` from the FHIR server, all at once; failures stay unavailable."""
        missing = [k for k in keys if k in data.unavailable and k not in data.fetch_attempted]
        if not missing:
            return
        data.fetch_attempted.update(missing)
        queries = {k: self.templates[k].replace("{{context.patientId}}", patient_id) for k in missing}
        token = request.fhirAuthorization.access_token.get_secret_value() if request.fhirAuthorization else None
        failures: dict[str, str] = {}
        try:
            fetched = await self._fetcher.fetch(queries, request.fhirServer, token)
        except DataUnavailable as exc:
            fetched, failures = exc.partial, exc.reasons
        for key, reason in failures.items():
            data.unavailable[key] = f"{data.unavailable[key]}; {reason}"
        readable = [k for k in missing if k in fetched]
        again = read_prefetch(fetched, readable, patient_id, WANTED_TYPES)
        for key in readable:
            if key in again.unavailable:
                data.unavailable[key] = f"{data.unavailable[key]}; from the FHIR server: {again.unavailable[key]}"
            else:
                data.resources[key] = again.resources[key]
                del data.unavailable[key]

    async def _require(self, data: PrefetchData, keys: tuple[str, ...], request: CdsRequest, patient_id: str) -> None:
        """Make sure `keys` are usable (fetching them if needed), else raise DataUnavailable (412)."""
        await self._fetch_missing(data, keys, request, patient_id)
        unavailable = {k: data.unavailable[k] for k in keys if k in data.unavailable}
        if unavailable:
            raise DataUnavailable(unavailable)

    async def handle(self, request: CdsRequest, context: BaseModel) -> CdsResponse:
        assert isinstance(context, PatientViewContext)
        patient_id = context.patientId
        now = self._clock()
        data = read_prefetch(request.prefetch, self.templates.keys(), patient_id, WANTED_TYPES)

        if "conditions" in data.unavailable:
            # Nothing can be decided without Conditions: read every missing key in one concurrent
            # round trip rather than one stage after another (the EHR's time budget is ~500 ms).
            await self._fetch_missing(data, REQUIRED_ALWAYS + REQUIRED_WITH_MS + OPTIONAL, request, patient_id)
        await self._require(data, REQUIRED_ALWAYS, request, patient_id)
        ms, _ = ms_findings(data.resources["conditions"])
        if not ms:
            return CdsResponse(cards=[])
        await self._fetch_missing(data, REQUIRED_WITH_MS + OPTIONAL, request, patient_id)
        await self._require(data, REQUIRED_WITH_MS, request, patient_id)
        medications_assessed = "medications" not in data.unavailable  # statements only supplement it

        facts = extract_facts(data.all_resources(), now.date(), self._rules, medications_assessed)
        decision = decide(facts)
        card = build_card(
            decision,
            self._content,
            CardContext(patient_id=patient_id, user_id=context.userId, now=now),
            self._rules.lookback_days,
            self._smart_app,
        )
        return CdsResponse(cards=[card] if card else [])
