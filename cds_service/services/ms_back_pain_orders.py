"""The order-entry services (`order-select`, `order-sign`): the same patient data and facts as the
patient-view service (one code path), plus what the selected (order-select) or all draft
(order-sign) orders are, decided by RULES.md 3.
"""

from __future__ import annotations

import logging
from typing import Any

from cds_service.cards.builder import CardContext
from cds_service.cards.order_cards import build_order_card
from cds_service.clinical.decision import decide
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.multiple_sclerosis import ms_findings
from cds_service.clinical.order_rules import advise_orders
from cds_service.clinical.orders import DraftOrder, classify_order, order_reason_findings, reason_conditions
from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.parse import parse_resource
from cds_service.protocol.call_url import call_base_url
from cds_service.protocol.models import (
    CdsRequest,
    CdsResponse,
    OrderSelectContext,
    OrderSignContext,
    ServiceDescriptor,
)
from cds_service.protocol.service import CdsService, ContextT
from cds_service.services.deps import ServiceDeps
from cds_service.services.patient_data import PatientDataLoader

log = logging.getLogger(__name__)

ORDER_SELECT_ID = "ms-back-pain-order-select"
ORDER_SIGN_ID = "ms-back-pain-order-sign"
_ORDER_TYPES = frozenset({"ServiceRequest", "MedicationRequest", "Condition", "Medication"})


def _draft_resources(context: OrderSignContext) -> dict[str, tuple[Any, dict[str, Any]]]:
    """reference -> (validated model, raw JSON) for every readable draft of this patient.

    Resource types the rules do not use (NutritionOrder, VisionPrescription ...) are ignored. A draft
    is named by its validated id, the reference `selections` use: one whose id is no FHIR id
    (`draft_1`, `urn:uuid:...`) cannot be named, and is skipped like any unreadable draft."""
    drafts: dict[str, tuple[Any, dict[str, Any]]] = {}
    skipped = 0
    for entry in context.draftOrders.get("entry") or []:
        raw = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(raw, dict) or not isinstance(raw.get("resourceType"), str) or not raw.get("id"):
            continue
        if raw["resourceType"] not in _ORDER_TYPES:
            continue
        subject = raw["subject"].get("reference") if isinstance(raw.get("subject"), dict) else None
        if subject and subject != f"Patient/{context.patientId}":
            skipped += 1
            continue
        model: Any = parse_resource(raw).resource
        if model is None or not model.id:
            skipped += 1
            continue
        drafts[f"{model.get_resource_type()}/{model.id}"] = (model, raw)
    if skipped:
        log.warning(
            "draftOrders: entries skipped (unreadable or another patient)",
            extra={"event": "draft_orders", "reason": "skipped", "count": skipped},
        )
    return drafts


class _MsBackPainOrders(CdsService[ContextT]):
    """What both order services share; order-select speaks about the selections, order-sign about all drafts."""

    def __init__(self, deps: ServiceDeps, hook: str, service_id: str, which_orders: str):
        self._data = PatientDataLoader(deps.fetcher)
        self.descriptor = ServiceDescriptor(
            hook=hook,
            id=service_id,
            title="MS back pain: imaging and analgesic orders",
            description=(
                f"For a patient with multiple sclerosis and back pain: warns when {which_orders} images only the "
                "lumbar spine (suggests cervical and thoracic MRI, or replaces an X-ray / CT), "
                "when a spinal MRI lacks the without-and-with contrast protocol (suggests the update), and when an "
                "NSAID or opioid is ordered for pain that may be central."
            ),
            prefetch=self._data.templates,
            usageRequirements=self._data.usage_requirements,
        )
        self._clock, self._content, self._rules, self._smart_app = (
            deps.clock,
            deps.card_content,
            deps.rules,
            deps.smart_app,
        )
        self._memory = deps.memory
        self._public_base_url = deps.public_base_url
        self._relevance = RelevanceFilter.from_value_sets()

    async def _advise(
        self, request: CdsRequest, context: OrderSignContext, selections: list[str] | None
    ) -> CdsResponse:
        """Cards for the orders named by `selections` (None: every draft)."""
        now = self._clock()
        drafts = _draft_resources(context)
        if selections is not None:
            unknown = [ref for ref in selections if ref not in drafts]
            if unknown:
                log.warning(
                    "order-select: selections name no readable draft order; ignored",
                    extra={"event": "draft_orders", "reason": "unknown_selection", "count": len(unknown)},
                )
            targets = [drafts[ref][0] for ref in selections if ref in drafts]
        else:
            targets = [model for model, _ in drafts.values()]
        orders = [
            model
            for model, _ in drafts.values()
            if model.get_resource_type() in ("ServiceRequest", "MedicationRequest")
        ]
        bundled = {ref: model for ref, (model, _) in drafts.items()}
        reason_conds = reason_conditions(targets, bundled)

        def has_ms(conditions: list[Any]) -> bool:
            return bool(ms_findings(conditions + reason_conds)[0] or order_reason_findings(targets, now.date())[0])

        data = await self._data.load(
            request,
            context.patientId,
            has_ms=has_ms,
            select=self._relevance.selector(now.date(), self._rules.lookback_days),
        )
        if data is None:
            return CdsResponse(cards=[])
        # The selected orders' own reasons count as evidence; other drafts are context only.
        facts = extract_facts(
            data.resources + reason_conds,
            now.date(),
            self._rules,
            data.medications_assessed,
            orders=targets,
            encounter_id=context.encounterId,
        )
        decision = decide(facts)
        medications = {ref: model for ref, model in bundled.items() if ref.startswith("Medication/")}
        all_drafts: list[DraftOrder] = [classify_order(o, medications) for o in orders]
        by_ref = {d.reference: d for d in all_drafts}
        chosen = [
            by_ref[f"{t.get_resource_type()}/{t.id}"] for t in targets if f"{t.get_resource_type()}/{t.id}" in by_ref
        ]
        ctx = CardContext(
            patient_id=context.patientId,
            user_id=context.userId,
            now=now,
            base_url=self._public_base_url or call_base_url(),
            draft_references=frozenset(drafts),
        )
        cards = [
            build_order_card(advice, decision, drafts[advice.order.reference][1], self._content, ctx, self._smart_app)
            for advice in advise_orders(decision, chosen, all_drafts)
        ]
        if self._memory is not None:
            self._memory.remember_soon(
                cards, decision, self.descriptor.id, request.hookInstance, context.patientId, now
            )
        return CdsResponse(cards=cards)


class MsBackPainOrderSelect(_MsBackPainOrders[OrderSelectContext]):
    context_model = OrderSelectContext

    def __init__(self, deps: ServiceDeps):
        super().__init__(deps, "order-select", ORDER_SELECT_ID, "the selected order")

    async def handle(self, request: CdsRequest, context: OrderSelectContext) -> CdsResponse:
        return await self._advise(request, context, selections=context.selections)


class MsBackPainOrderSign(_MsBackPainOrders[OrderSignContext]):
    context_model = OrderSignContext

    def __init__(self, deps: ServiceDeps):
        super().__init__(deps, "order-sign", ORDER_SIGN_ID, "a draft order")

    async def handle(self, request: CdsRequest, context: OrderSignContext) -> CdsResponse:
        return await self._advise(request, context, selections=None)
