"""Order advice -> CDS Hooks cards for order-select / order-sign (RULES.md 3).

The text names the order by what it asks for ("X-ray lumbar spine"), never by its id. Actions name
real drafts: `delete` and `update` refer to the selected order by its reference from `draftOrders`;
`create` and `update` carry R4 ServiceRequests validated with `fhir.resources`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_service.cards.builder import CardContext, cord_mri_actions, evidence_reasons
from cds_service.cards.content import CardContent
from cds_service.cards.detail import assemble, management_lines, why_lines, worth_asking
from cds_service.cards.links import card_links, card_source, override_reasons
from cds_service.cards.words import chart_words, clip, md
from cds_service.clinical import valuesets
from cds_service.clinical.decision import Decision
from cds_service.clinical.order_rules import OrderAdvice, OrderAdviceKind
from cds_service.clinical.orders import DraftOrder
from cds_service.protocol.models import Action, Card, Suggestion


def order_words(order: DraftOrder, draft: Mapping[str, Any], content: CardContent) -> str:
    """What the draft asks for, in the client's words (its code's text or display), markdown-safe."""
    concept = draft.get("code") or draft.get("medicationCodeableConcept") or {}
    concept = concept if isinstance(concept, dict) else {}
    text = concept.get("text") if isinstance(concept.get("text"), str) else None
    coding = concept.get("coding")
    codings: list[Any] = coding if isinstance(coding, list) else []
    if not text:
        text = next((c["display"] for c in codings if isinstance(c, dict) and isinstance(c.get("display"), str)), None)
    unnamed = content.orders.unnamed
    fallback = (
        getattr(unnamed, order.resource_type) if order.resource_type in type(unnamed).model_fields else unnamed.other
    )
    if isinstance(text, str) and text.strip():
        return md(clip(text))
    if order.imaging:
        return md(chart_words(order.imaging.matched, fallback))
    return fallback


def _contrast_update(order: DraftOrder, draft: Mapping[str, Any], content: CardContent, what: str) -> Suggestion | None:
    """The selected draft, unchanged but for its code: the without-and-with protocol, same regions.
    None when the draft as sent is not a valid ServiceRequest (it was read with repairs): an update
    must not send an invalid resource, nor silently drop what the clinician entered."""
    regions = order.imaging.regions if order.imaging else frozenset()
    orderable = valuesets.load("spinal_mri")["orderable"]
    target_key = (
        next(iter(regions)) if len(regions) == 1 and next(iter(regions)) in ("cervical", "thoracic") else "spine"
    )
    codings = [dict(c) for c in orderable[target_key]]
    updated = copy.deepcopy(dict(draft))
    updated["code"] = {"coding": codings, "text": codings[0]["display"]}
    try:
        ServiceRequest.model_validate(updated)  # never send an invalid resource
    except (ValidationError, ValueError, TypeError):
        return None
    text = content.orders.mri_contrast
    region_words = "spine" if target_key == "spine" else f"{target_key} spine"
    return Suggestion(
        label=text.update_label.format(regions=region_words),
        uuid=str(uuid.uuid4()),
        isRecommended=True,
        actions=[
            Action(
                type="update",
                description=text.update_description.format(what=what, target=codings[0]["display"]),
                resource=updated,
            )
        ],
    )


def _cord_mri_suggestions(
    advice: OrderAdvice, decision: Decision, content: CardContent, ctx: CardContext, what: str
) -> list[Suggestion]:
    if not advice.suggest_cord_mri:
        return []
    reasons = evidence_reasons(decision, ctx.draft_references)
    text = content.orders.lumbar_imaging
    suggestions = [
        Suggestion(
            label=content.mri.label if advice.kind is not OrderAdviceKind.LUMBAR_IMAGING else text.add_label,
            uuid=str(uuid.uuid4()),
            isRecommended=advice.recommend_cord_mri,
            actions=cord_mri_actions(content, ctx, reasons),
        )
    ]
    if advice.replace_order and advice.order.imaging:
        modality = getattr(content.orders.modality_names, advice.order.imaging.modality)
        delete = Action(
            type="delete",
            description=text.delete_description.format(modality=modality, what=what),
            resourceId=advice.order.reference,
        )
        suggestions.append(
            Suggestion(
                label=text.replace_label.format(modality=modality),
                uuid=str(uuid.uuid4()),
                isRecommended=False,
                actions=[delete, *cord_mri_actions(content, ctx, reasons)],
            )
        )
    return suggestions


def build_order_card(
    advice: OrderAdvice,
    decision: Decision,
    draft: Mapping[str, Any],
    content: CardContent,
    ctx: CardContext,
    smart_app: tuple[str, str] | None = None,
) -> Card:
    """One card about one order."""
    orders = content.orders
    what = order_words(advice.order, draft, content)
    tail: list[str] = []
    if advice.kind is OrderAdviceKind.LUMBAR_IMAGING:
        lumbar = orders.lumbar_imaging
        summary, head = lumbar.summary, [lumbar.lead.format(what=what)]
        suggestions = _cord_mri_suggestions(advice, decision, content, ctx, what)
        head.append(lumbar.now if suggestions else lumbar.covered)
    elif advice.kind is OrderAdviceKind.MRI_CONTRAST:
        contrast = orders.mri_contrast
        summary, head = contrast.summary, [contrast.lead.format(what=what), contrast.now]
        update = _contrast_update(advice.order, draft, content, what)
        suggestions = [update] if update else []
    else:
        analgesic = orders.analgesic
        classes = set(advice.order.analgesic)
        drug_class = getattr(analgesic.drug_classes, "both" if len(classes) > 1 else next(iter(classes)))
        warning = advice.indicator == "warning"
        summary = analgesic.summary_warning if warning else analgesic.summary_info
        lead = analgesic.lead_warning if warning else analgesic.lead_info
        head = [lead.format(what=what, drug_class=drug_class), analgesic.now_warning if warning else analgesic.now_info]
        suggestions = _cord_mri_suggestions(advice, decision, content, ctx, what)
        tail += worth_asking(decision, content)
        management = management_lines(decision, content)
        if management:
            tail.append("\n".join(management))
    tail.append(content.detail.disclaimer)
    return Card(
        uuid=str(uuid.uuid4()),
        summary=summary,
        indicator=advice.indicator,
        detail=assemble(head, why_lines(decision, content), tail, content),
        source=card_source(content),
        suggestions=suggestions or None,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=override_reasons(content),
        links=card_links(content, ctx.guidance, smart_app),
    )
