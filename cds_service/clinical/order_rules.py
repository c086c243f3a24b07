"""Order-entry rules (RULES.md 3): what to say about each selected (order-select) or draft
(order-sign) order, given the patient's decision. Nothing is said without MS + back pain.

    lumbar-only imaging (MR, CT, X-ray)          warning: add cervical + thoracic MRI; replace an X-ray / CT
    spinal MRI without contrast covering the cord  info: update the draft to without-and-with contrast
    spinal MRI without-and-with covering the cord  no card
    NSAID / opioid for the back pain               warning with cord features, red flags or poor NSAID
                                                   response, else info; the MRI suggestion as in RULES.md 2
    anything else                                  no card
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from cds_service.clinical import valuesets
from cds_service.clinical.decision import Decision, Level
from cds_service.clinical.orders import CT, MR, XR, DraftOrder
from cds_service.clinical.text import any_phrase


class OrderAdviceKind(enum.StrEnum):
    LUMBAR_IMAGING = "lumbar_imaging"
    MRI_CONTRAST = "mri_contrast"
    ANALGESIC = "analgesic"


@dataclass(frozen=True)
class OrderAdvice:
    kind: OrderAdviceKind
    order: DraftOrder
    indicator: str  # "warning" or "info"
    suggest_cord_mri: bool  # create cervical + thoracic MRI drafts
    recommend_cord_mri: bool
    replace_order: bool = False  # X-ray / CT: delete the selected draft and create the MRI instead


def _cord_mri_in_drafts(drafts: Iterable[DraftOrder]) -> bool:
    """The session already orders an MRI of the cervical and thoracic cord without and with contrast."""
    regions: set[str] = set()
    for order in drafts:
        imaging = order.imaging
        if imaging and imaging.modality == MR and imaging.contrast == "without-and-with":
            regions |= imaging.regions
    return {"cervical", "thoracic"} <= regions


def _for_back_pain(order: DraftOrder) -> bool:
    """No stated reason (a clinician ordering an analgesic for a patient with back pain), or a
    reason that names back pain."""
    if not order.reason_texts:
        return True
    back = valuesets.concepts("back_pain")["back_pain"]
    return any(any_phrase(text, back.text) for text in order.reason_texts)


def advise_orders(
    decision: Decision, orders: Iterable[DraftOrder], all_drafts: Iterable[DraftOrder]
) -> list[OrderAdvice]:
    """One piece of advice per order that a RULES.md 3 row speaks about."""
    if decision.level is Level.NONE or decision.mri is None:
        return []
    all_drafts = list(all_drafts)
    cord_mri_ordered = _cord_mri_in_drafts(all_drafts)
    suggest = decision.mri.suggest and not cord_mri_ordered
    recommended = decision.mri.recommended
    facts = decision.facts
    central = bool(facts.cord_features or facts.poor_analgesic_response or facts.new_red_flags)
    advice: list[OrderAdvice] = []
    for order in orders:
        imaging = order.imaging
        if imaging is not None:
            if imaging.lumbar_only:
                advice.append(
                    OrderAdvice(
                        OrderAdviceKind.LUMBAR_IMAGING,
                        order,
                        "warning",
                        suggest_cord_mri=suggest,
                        recommend_cord_mri=True,
                        replace_order=suggest and imaging.modality in (CT, XR),
                    )
                )
            elif imaging.modality == MR and imaging.images_cord and imaging.contrast == "without":
                advice.append(
                    OrderAdvice(
                        OrderAdviceKind.MRI_CONTRAST, order, "info", suggest_cord_mri=False, recommend_cord_mri=False
                    )
                )
            continue
        if order.analgesic and _for_back_pain(order):
            advice.append(
                OrderAdvice(
                    OrderAdviceKind.ANALGESIC,
                    order,
                    "warning" if central else "info",
                    suggest_cord_mri=suggest,
                    recommend_cord_mri=recommended,
                )
            )
    return advice
