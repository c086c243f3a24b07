"""Order advice -> CDS Hooks cards for order-select / order-sign (RULES.md 3).

Actions name real drafts: `delete` and `update` refer to the selected order by its reference from
`draftOrders`; `create` and `update` carry R4 ServiceRequests validated with `fhir.resources`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_service.cards.builder import (
    CardContext,
    card_source,
    cord_mri_actions,
    evidence_reasons,
    evidence_section,
    management_section,
    override_reasons,
    reference_links,
)
from cds_service.clinical import valuesets
from cds_service.clinical.decision import Decision
from cds_service.clinical.order_rules import OrderAdvice, OrderAdviceKind
from cds_service.clinical.orders import DraftOrder
from cds_service.protocol.models import Action, Card, Suggestion


def _what(order: DraftOrder, draft: Mapping[str, Any]) -> str:
    concept = draft.get("code") or draft.get("medicationCodeableConcept") or {}
    concept = concept if isinstance(concept, dict) else {}
    text = concept.get("text") if isinstance(concept.get("text"), str) else None
    coding = concept.get("coding")
    codings: list[Any] = coding if isinstance(coding, list) else []
    if not text:
        text = next((c["display"] for c in codings if isinstance(c, dict) and isinstance(c.get("display"), str)), None)
    if not text and order.imaging:
        text = order.imaging.matched
    return " ".join(str(text or order.resource_type).split())


def _contrast_update(order: DraftOrder, draft: Mapping[str, Any], content: dict[str, Any]) -> Suggestion | None:
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
    text = content["orders"]["mri_contrast"]
    region_words = "spine" if target_key == "spine" else f"{target_key} spine"
    return Suggestion(
        label=text["update_label"].format(regions=region_words),
        uuid=str(uuid.uuid4()),
        isRecommended=True,
        actions=[
            Action(
                type="update",
                description=text["update_description"].format(order=order.reference, target=codings[0]["display"]),
                resource=updated,
            )
        ],
    )


def _cord_mri_suggestions(
    advice: OrderAdvice, decision: Decision, content: dict[str, Any], ctx: CardContext
) -> list[Suggestion]:
    if not advice.suggest_cord_mri:
        return []
    reasons = evidence_reasons(decision)
    text = content["orders"]["lumbar_imaging"]
    suggestions = [
        Suggestion(
            label=content["mri"]["label"] if advice.kind is not OrderAdviceKind.LUMBAR_IMAGING else text["add_label"],
            uuid=str(uuid.uuid4()),
            isRecommended=advice.recommend_cord_mri,
            actions=cord_mri_actions(content, ctx, reasons),
        )
    ]
    if advice.replace_order and advice.order.imaging:
        modality = content["orders"]["modality_names"][advice.order.imaging.modality]
        delete = Action(
            type="delete",
            description=text["delete_description"].format(modality=modality, order=advice.order.reference),
            resourceId=advice.order.reference,
        )
        suggestions.append(
            Suggestion(
                label=text["replace_label"].format(modality=modality),
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
    content: dict[str, Any],
    ctx: CardContext,
    smart_app: tuple[str, str] | None = None,
) -> Card:
    """One card about one order."""
    orders_text = content["orders"]
    what = _what(advice.order, draft)
    if advice.kind is OrderAdviceKind.LUMBAR_IMAGING:
        text = orders_text["lumbar_imaging"]
        summary, intro = text["summary"], text["intro"].format(order=advice.order.reference, what=what)
        suggestions = _cord_mri_suggestions(advice, decision, content, ctx)
        extra = [] if suggestions else [text["covered"]]
    elif advice.kind is OrderAdviceKind.MRI_CONTRAST:
        text = orders_text["mri_contrast"]
        summary, intro = text["summary"], text["intro"].format(order=advice.order.reference, what=what)
        update = _contrast_update(advice.order, draft, content)
        suggestions, extra = ([update] if update else []), []
    else:
        text = orders_text["analgesic"]
        classes = set(advice.order.analgesic)
        drug_class = text["drug_classes"]["both" if len(classes) > 1 else next(iter(classes))]
        tone = "warning" if advice.indicator == "warning" else "info"
        summary = text[f"summary_{tone}"]
        intro = text[f"intro_{tone}"].format(order=advice.order.reference, what=what, drug_class=drug_class)
        suggestions, extra = _cord_mri_suggestions(advice, decision, content, ctx), []
    lines = (
        [intro, ""]
        + evidence_section(decision, content)
        + ([""] + extra if extra else [])
        + [""]
        + management_section(content)
    )
    return Card(
        uuid=str(uuid.uuid4()),
        summary=summary,
        indicator=advice.indicator,
        detail="\n".join(lines),
        source=card_source(content),
        suggestions=suggestions or None,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=override_reasons(content),
        links=reference_links(content, smart_app),
    )
