"""Decision -> the patient-view card: a summary that carries the message, a short detail (what to do
now, why, what is still worth asking, management only where it fits the mechanism found), the
spinal-MRI suggestion, override reasons and links (the full guidance first). Wording: cards/*.toml.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cds_service.cards.content import CardContent
from cds_service.cards.detail import assemble, management_lines, why_lines, worth_asking
from cds_service.cards.links import card_links, card_source, guidance_url, override_reasons
from cds_service.cards.orders import REASON_REFERENCE_TYPES, OrderReasons, spinal_mri_request
from cds_service.cards.words import chart_words, codings_in, md, short_date, where_and_when
from cds_service.clinical.decision import Decision, Level
from cds_service.clinical.facts import CERVICAL, LUMBAR, THORACIC, Finding, SpinalMri
from cds_service.protocol.models import Action, Card, Suggestion


@dataclass(frozen=True)
class CardContext:
    """What the card needs from the call: whose chart, who is ordering, when, where the service is
    reached (its public base URL: the guidance link), and which references are the client's draft
    orders (never named inside a new order)."""

    patient_id: str
    user_id: str | None
    now: dt.datetime
    base_url: str | None = None
    draft_references: frozenset[str] = frozenset()

    @property
    def guidance(self) -> str | None:
        return guidance_url(self.base_url) if self.base_url else None


def study_name(study: SpinalMri, content: CardContent) -> str:
    """ "MRI cervical and thoracic spine", in anatomical order."""
    names = content.mri.regions
    regions = [getattr(names, r) for r in (CERVICAL, THORACIC, LUMBAR) if r in study.regions]
    return content.mri.study.format(regions=content.mri.and_.join(regions))


def _mri_sentences(decision: Decision, content: CardContent) -> list[str]:
    advice, mri, no_date = decision.mri, content.mri, content.detail.no_date
    if advice is None:
        return []
    out: list[str] = []
    if advice.recent_study is not None:
        study = advice.recent_study
        if advice.newer_red_flags:
            flags = ", ".join(
                sorted({chart_words(f.evidence.matched, f.label).lower() for f in advice.newer_red_flags})
            )
            date = short_date(study.evidence.date) if study.evidence.date else no_date
            out.append(mri.newer_red_flag.format(date=date, flags=md(flags)))
        else:
            out.append(
                mri.recent_study.format(
                    study=md(study_name(study, content)), when=md(where_and_when(study.evidence, no_date))
                )
            )
    for partial in advice.recent_partial_studies:
        out.append(
            mri.partial_study.format(
                study=md(study_name(partial, content)), when=md(where_and_when(partial.evidence, no_date))
            )
        )
    return out


def _quieted(decision: Decision, content: CardContent) -> list[str]:
    note = decision.quieted_by
    if note is None:
        return []
    reason = f" ({md(note.reason)})" if note.reason else ""
    return [content.detail.quieted.format(date=short_date(note.overridden_on), reason=reason)]


def _detail(decision: Decision, content: CardContent) -> str:
    level = content.levels.of(decision.level)
    facts, text = decision.facts, content.detail
    head = [level.lead, *_quieted(decision, content), level.now]
    tail = _mri_sentences(decision, content)
    if not facts.medications_assessed:
        tail.append(text.medications_not_assessed)
    if decision.consider_dual_causes and level.management:
        tail.append(text.dual_causes)
    tail += worth_asking(decision, content)
    management = management_lines(decision, content) if level.management else []
    if management:
        tail.append("\n".join(management))
    tail.append(text.disclaimer)
    return assemble(head, why_lines(decision, content), tail, content)


def order_reasons(findings: Iterable[Finding], drafts: frozenset[str]) -> OrderReasons:
    """The evidence for the new order: chart resources by reference where R4 allows them in
    `reasonReference`; anything else (a draft order's reason, a visit) as a coded or text reason."""
    references: list[str] = []
    concepts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for finding in findings:
        ev = finding.evidence
        if ev.resource_id and ev.resource_type in REASON_REFERENCE_TYPES and ev.reference not in drafts:
            if ev.reference not in seen:
                seen.add(ev.reference)
                references.append(ev.reference)
            continue
        text = chart_words(ev.matched, finding.label)
        key = f"text:{text.lower()}"
        if key in seen:
            continue
        seen.add(key)
        concept: dict[str, Any] = {"text": text}
        coded = codings_in(ev.matched)
        if coded:
            concept["coding"] = coded
        concepts.append(concept)
    return OrderReasons(tuple(references), tuple(concepts))


def evidence_reasons(decision: Decision, drafts: frozenset[str] = frozenset()) -> OrderReasons:
    """Why the cord MRI is suggested: the MS, back-pain and new red-flag evidence."""
    facts = decision.facts
    return order_reasons(facts.multiple_sclerosis + facts.back_pain + facts.new_red_flags, drafts)


def cord_mri_actions(content: CardContent, ctx: CardContext, reasons: OrderReasons) -> list[Action]:
    """Two `create` actions: MRI cervical and thoracic spine without and with contrast."""
    descriptions = {"cervical": content.mri.description_cervical, "thoracic": content.mri.description_thoracic}
    return [
        Action(
            type="create",
            description=descriptions[region],
            resource=spinal_mri_request(region, ctx.patient_id, ctx.user_id, reasons, ctx.now),
        )
        for region in ("cervical", "thoracic")
    ]


def _mri_suggestion(decision: Decision, content: CardContent, ctx: CardContext) -> Suggestion:
    return Suggestion(
        label=content.mri.label,
        uuid=str(uuid.uuid4()),
        isRecommended=decision.mri is not None and decision.mri.recommended,
        actions=cord_mri_actions(content, ctx, evidence_reasons(decision, ctx.draft_references)),
    )


def build_card(
    decision: Decision,
    content: CardContent,
    ctx: CardContext,
    smart_app: tuple[str, str] | None = None,
) -> Card | None:
    """The card for this decision, or None when the decision is "no card"."""
    if decision.level is Level.NONE:
        return None
    level = content.levels.of(decision.level)
    indicator = "info" if decision.quieted_by is not None else level.indicator
    suggestions = [_mri_suggestion(decision, content, ctx)] if decision.mri and decision.mri.suggest else None
    return Card(
        uuid=str(uuid.uuid4()),
        summary=level.summary,
        indicator=indicator,
        detail=_detail(decision, content),
        source=card_source(content),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=override_reasons(content),
        links=card_links(content, ctx.guidance, smart_app),
    )
