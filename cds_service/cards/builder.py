"""Decision -> CDS Hooks card: summary, markdown detail listing the evidence, the spinal-MRI
suggestion, override reasons and reference links. Wording comes from cards/ms-back-pain.toml.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from cds_service.cards.orders import spinal_mri_request
from cds_service.clinical.decision import Decision, Level
from cds_service.clinical.facts import Finding, SpinalMri
from cds_service.protocol.models import Action, Card, Coding, Link, Source, Suggestion


@dataclass(frozen=True)
class CardContext:
    """What the card needs from the call: whose chart, who is ordering, and when."""

    patient_id: str
    user_id: str | None
    now: dt.datetime


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "date not recorded"


def _md(text: str) -> str:
    """Chart text shown inside markdown: keep it on one line and neutralise markdown syntax."""
    flat = " ".join(text.split())
    for char in "\\`*_[]<>#|":
        flat = flat.replace(char, "\\" + char)
    return flat


def _finding_line(title: str, finding: Finding, bilateral_word: str) -> str:
    ev = finding.evidence
    extra = f" ({bilateral_word})" if finding.bilateral else ""
    return f"- **{_md(title)}**{extra}: {_md(ev.matched)}; {ev.reference}, {_date(ev.date)}"


def _title(group: str, label: str) -> str:
    """ "New red flag: Urinary urgency"; just "Multiple sclerosis" when the two say the same."""
    return group if group.lower().startswith(label.lower()) else f"{group}: {label}"


def _mri_line(label: str, study: SpinalMri) -> str:
    return f"- **{label}**: {_md(study.evidence.matched)}; {study.evidence.reference}, {_date(study.evidence.date)}"


def evidence_section(decision: Decision, content: dict[str, Any]) -> list[str]:
    """The markdown lines listing every piece of evidence, with its resource and date."""
    facts, text = decision.facts, content["detail"]
    labels, bilateral = text["fact_labels"], text["bilateral"]
    lines = [f"**{text['evidence_heading']}**"]
    groups: Iterable[tuple[str, tuple[Finding, ...]]] = (
        ("multiple_sclerosis", facts.multiple_sclerosis),
        ("back_pain", facts.back_pain),
        ("new_red_flags", facts.new_red_flags),
        ("cord_features", facts.cord_features),
        ("poor_analgesic_response", facts.poor_analgesic_response),
        ("mechanical_pattern", facts.mechanical_pattern),
    )
    for key, findings in groups:
        lines += [_finding_line(_title(labels[key], f.label), f, bilateral) for f in findings]
    lines += [_mri_line(labels["spinal_mri"], s) for s in facts.spinal_mri]

    if facts.chronic_red_flags:
        lines += ["", f"**{text['chronic_heading']}**"]
        lines += [_finding_line(f.label, f, bilateral) for f in facts.chronic_red_flags]
    if facts.demyelinating_context:
        lines += ["", f"**{text['context_heading']}**"]
        lines += [_finding_line(f.label, f, bilateral) for f in facts.demyelinating_context]
    return lines


def management_section(content: dict[str, Any]) -> list[str]:
    text = content["detail"]
    return (
        [f"**{text['management_heading']}**"] + [f"- {item}" for item in text["management"]] + ["", text["disclaimer"]]
    )


def _detail(decision: Decision, content: dict[str, Any], settings_days: int) -> str:
    facts, text = decision.facts, content["detail"]
    lines = [content["levels"][decision.level.value]["intro"].format(lookback_days=settings_days), ""]
    if decision.quieted_by is not None:
        note = decision.quieted_by
        reason = f" ({_md(note.reason)})" if note.reason else ""
        lines += [text["quieted"].format(date=note.overridden_on.isoformat(), reason=reason), ""]
    lines += evidence_section(decision, content)

    mri_lines = _mri_sentences(decision, content["mri"])
    if mri_lines:
        lines += [""] + mri_lines

    if decision.not_documented:
        lines += ["", f"**{text['not_documented_heading']}**"]
        lines += [f"- {text['features'][key]}" for key in decision.not_documented]
    if not facts.medications_assessed:
        lines += ["", text["medications_not_assessed"]]
    if decision.consider_dual_causes:
        where = ", ".join(f.evidence.reference for f in facts.mechanical_pattern)
        lines += ["", text["dual_causes"].format(evidence=where)]

    lines += [""] + management_section(content)
    return "\n".join(lines)


def _mri_sentences(decision: Decision, mri: dict[str, Any]) -> list[str]:
    advice = decision.mri
    if advice is None:
        return []
    out: list[str] = []
    if advice.recent_study is not None:
        study = advice.recent_study
        if advice.newer_red_flags:
            flags = ", ".join(sorted({f.label.lower() for f in advice.newer_red_flags}))
            out.append(mri["newer_red_flag"].format(date=_date(study.evidence.date), flags=_md(flags)))
        else:
            out.append(mri["recent_study"].format(study=study.evidence.reference, date=_date(study.evidence.date)))
    for partial in advice.recent_partial_studies:
        regions = "/".join(sorted(partial.regions))
        out.append(
            mri["partial_study"].format(
                study=f"{regions} MRI {partial.evidence.reference}", date=_date(partial.evidence.date)
            )
        )
    if advice.suggest:
        out.append(mri["why"])
    return out


def evidence_reasons(decision: Decision) -> list[str]:
    """Evidence references for the order's reasonReference: MS and back-pain Conditions / Observations."""
    facts = decision.facts
    refs = [
        f.evidence.reference
        for f in facts.multiple_sclerosis + facts.back_pain + facts.new_red_flags
        if f.evidence.resource_id
    ]
    return list(dict.fromkeys(refs))


def _mri_suggestion(decision: Decision, content: dict[str, Any], ctx: CardContext) -> Suggestion:
    actions = cord_mri_actions(content, ctx, evidence_reasons(decision))
    return Suggestion(
        label=content["mri"]["label"],
        uuid=str(uuid.uuid4()),
        isRecommended=decision.mri is not None and decision.mri.recommended,
        actions=actions,
    )


def cord_mri_actions(content: dict[str, Any], ctx: CardContext, reasons: list[str]) -> list[Action]:
    """Two `create` actions: MRI cervical and thoracic spine without and with contrast."""
    return [
        Action(
            type="create",
            description=content["mri"][f"description_{region}"],
            resource=spinal_mri_request(region, ctx.patient_id, ctx.user_id, reasons, ctx.now),
        )
        for region in ("cervical", "thoracic")
    ]


def card_source(content: dict[str, Any]) -> Source:
    source = content["source"]
    return Source(label=source["label"], url=source.get("url"), topic=Coding(**source["topic"]))


def override_reasons(content: dict[str, Any]) -> list[Coding]:
    system = content["override_reason_system"]["uri"]
    return [Coding(system=system, code=r["code"], display=r["display"]) for r in content["override_reasons"]]


def reference_links(content: dict[str, Any], smart_app: tuple[str, str] | None) -> list[Link]:
    links = [
        Link(
            label=f"PubMed: {ref['title']}",
            url="https://pubmed.ncbi.nlm.nih.gov/?term=" + quote_plus(ref["title"]),
            type="absolute",
        )
        for ref in content["references"]
    ]
    if smart_app is not None:
        label, url = smart_app
        links.append(Link(label=label, url=url, type="smart"))
    return links


def build_card(
    decision: Decision,
    content: dict[str, Any],
    ctx: CardContext,
    lookback_days: int,
    smart_app: tuple[str, str] | None = None,
) -> Card | None:
    """The card for this decision, or None when the decision is "no card"."""
    if decision.level is Level.NONE:
        return None
    level = content["levels"][decision.level.value]
    indicator = "info" if decision.quieted_by is not None else level["indicator"]
    suggestions = [_mri_suggestion(decision, content, ctx)] if decision.mri and decision.mri.suggest else None
    return Card(
        uuid=str(uuid.uuid4()),
        summary=level["summary"],
        indicator=indicator,
        detail=_detail(decision, content, lookback_days),
        source=card_source(content),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=override_reasons(content),
        links=reference_links(content, smart_app),
    )
