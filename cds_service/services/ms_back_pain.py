"""The `patient-view` service: MS + back pain -> possible spinal cord involvement, spinal MRI advice.

It composes the layers: patient data (`patient_data.py`) -> facts -> decision -> card.
"""

from __future__ import annotations

import logging

from cds_service.cards.builder import CardContext, build_card
from cds_service.cards.links import override_reason_display
from cds_service.clinical.alert_fatigue import quiet_after_override
from cds_service.clinical.decision import decide
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.multiple_sclerosis import ms_findings
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.protocol.call_url import call_base_url
from cds_service.protocol.models import CdsRequest, CdsResponse, PatientViewContext, ServiceDescriptor
from cds_service.protocol.service import CdsService
from cds_service.services.deps import ServiceDeps
from cds_service.services.patient_data import PatientDataLoader

log = logging.getLogger(__name__)

SERVICE_ID = "ms-back-pain-patient-view"


class MsBackPainPatientView(CdsService[PatientViewContext]):
    context_model = PatientViewContext

    def __init__(self, deps: ServiceDeps):
        self._data = PatientDataLoader(deps.fetcher)
        self.descriptor = ServiceDescriptor(
            hook="patient-view",
            id=SERVICE_ID,
            title="MS back pain: possible spinal cord involvement",
            description=(
                "When a patient with multiple sclerosis has a back pain complaint, flags possible spinal cord "
                "involvement, graded by red flags (new weakness, balance, bladder or sensory change) and cord "
                "features, "
                "and suggests a cervical and thoracic spinal MRI as draft orders."
            ),
            prefetch=self._data.templates,
            usageRequirements=self._data.usage_requirements,
        )
        self._clock, self._content = deps.clock, deps.card_content
        self._relevance = RelevanceFilter.from_value_sets()
        self._rules, self._smart_app, self._memory = deps.rules, deps.smart_app, deps.memory
        self._public_base_url = deps.public_base_url

    async def handle(self, request: CdsRequest, context: PatientViewContext) -> CdsResponse:
        patient_id = context.patientId
        now = self._clock()
        data = await self._data.load(
            request,
            patient_id,
            has_ms=lambda conditions: bool(ms_findings(conditions)[0]),
            select=self._relevance.selector(now.date(), self._rules.lookback_days),
        )
        if data is None:
            return CdsResponse(cards=[])
        facts = extract_facts(
            data.resources, now.date(), self._rules, data.medications_assessed, encounter_id=context.encounterId
        )
        decision = decide(facts)
        if self._memory is not None and decision.shows_card:
            override = await self._memory.last_override(SERVICE_ID, patient_id, now)
            if override is not None:
                reason = override_reason_display(self._content, override.override_reason)
                known = [ref.reference for ref in override.red_flag_refs]
                decision = quiet_after_override(decision, override.overridden_at, known, reason)
        card = build_card(
            decision,
            self._content,
            CardContext(
                patient_id=patient_id,
                user_id=context.userId,
                now=now,
                base_url=self._public_base_url or call_base_url(),
            ),
            self._smart_app,
        )
        cards = [card] if card else []
        if self._memory is not None:
            self._memory.remember_soon(cards, decision, SERVICE_ID, request.hookInstance, patient_id, now)
        return CdsResponse(cards=cards)
