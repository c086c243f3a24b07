"""The parts of a card's detail every card shares: why (the evidence, each fact once), the features
still worth asking about, management that fits the mechanism found, and the length budget."""

from __future__ import annotations

from collections.abc import Iterable

from cds_service.cards.content import CardContent
from cds_service.cards.words import chart_words, evidence_words, md
from cds_service.clinical.decision import Decision
from cds_service.clinical.facts import ORDER_REASON, Finding

MAX_DETAIL = 1000  # characters: a card is read in seconds; the full guidance is one click away
_KEEP_AT_LEAST = 3  # evidence lines kept whatever the budget: MS, back pain, and the first finding that matters


def _from_order_reason(finding: Finding) -> bool:
    return finding.evidence.where == ORDER_REASON


def _from_chart_first(findings: Iterable[Finding]) -> list[Finding]:
    """Chart evidence before evidence from a draft order's reason (the same fact, told once)."""
    items = list(findings)
    return [f for f in items if not _from_order_reason(f)] + [f for f in items if _from_order_reason(f)]


def _one_per_concept(findings: Iterable[Finding]) -> list[tuple[Finding, bool]]:
    """The first finding of each concept, and whether any finding of that concept is bilateral."""
    first: dict[str, Finding] = {}
    bilateral: dict[str, bool] = {}
    for finding in findings:
        first.setdefault(finding.concept, finding)
        bilateral[finding.concept] = bilateral.get(finding.concept, False) or finding.bilateral
    return [(finding, bilateral[concept]) for concept, finding in first.items()]


def _line(label: str, finding: Finding, what: str, bilateral: bool, content: CardContent, always_label: bool) -> str:
    text = content.detail
    said = what.lower()
    words = evidence_words(finding.evidence, finding.label, text.no_date, what)
    if bilateral and text.bilateral.lower() not in said:
        words = words.replace(" (", f", {md(text.bilateral)} (", 1)
    if always_label or (label.lower() not in said and finding.label.lower() not in said):
        return f"- **{md(label)}:** {words}"
    return f"- {words}"


def why_lines(decision: Decision, content: CardContent) -> list[str]:
    """One bullet per fact: MS once, back pain once (the chart before an order's reason), each red flag
    and cord feature once; what a record already said is not said again under another heading."""
    facts, labels = decision.facts, content.detail.fact_labels
    groups: list[tuple[str, list[tuple[Finding, bool]], bool]] = [
        (labels.multiple_sclerosis, [(f, False) for f in _from_chart_first(facts.multiple_sclerosis)[:1]], False),
        (labels.back_pain, [(f, False) for f in _from_chart_first(facts.back_pain)[:1]], False),
        (labels.new_red_flags, _one_per_concept(facts.new_red_flags), True),
        (labels.cord_features, _one_per_concept(facts.cord_features), False),
        (labels.poor_analgesic_response, [(f, False) for f in facts.poor_analgesic_response[:1]], False),
        (labels.mechanical_pattern, [(f, False) for f in facts.mechanical_pattern[:1]], False),
        (labels.chronic_red_flags, _one_per_concept(facts.chronic_red_flags), True),
        (labels.demyelinating_context, [(f, False) for f in facts.demyelinating_context[:1]], True),
    ]
    shown: set[tuple[str, str]] = set()
    lines: list[str] = []
    for label, findings, always_label in groups:
        for finding, bilateral in findings:
            # the same words from the same record say nothing new (MS of the spinal cord is MS and a cord feature)
            what = chart_words(finding.evidence.matched, finding.label)
            key = (finding.evidence.reference, what)
            if key in shown:
                continue
            shown.add(key)
            lines.append(_line(label, finding, what, bilateral, content, always_label))
    return lines


def worth_asking(decision: Decision, content: CardContent) -> list[str]:
    if not decision.not_documented:
        return []
    items = "; ".join(content.detail.features[key] for key in decision.not_documented)
    return [content.detail.worth_asking.format(items=items)]


def management_lines(decision: Decision, content: CardContent) -> list[str]:
    """Only the management that fits a mechanism the chart shows (a cord feature or a mechanical pattern)."""
    facts = decision.facts
    found = {f.concept for f in facts.cord_features + facts.mechanical_pattern}
    return [f"- {item.text}" for item in content.management if found & set(item.when)]


def assemble(head: list[str], why: list[str], tail: list[str], content: CardContent, limit: int = MAX_DETAIL) -> str:
    """The detail: `head` paragraphs, the Why list, `tail` paragraphs (blank lines between), within
    `limit` characters: the last evidence lines give way first ("and N more in the chart")."""
    text = content.detail

    def render(evidence: list[str], hidden: int) -> str:
        more = [f"- {text.more.format(count=hidden)}"] if hidden else []
        why_block = "\n".join([f"**{text.why_heading}**", *evidence, *more])
        return "\n\n".join([*head, why_block, *tail])

    kept = len(why)
    detail = render(why, 0)
    while len(detail) > limit and kept > _KEEP_AT_LEAST:
        kept -= 1
        detail = render(why[:kept], len(why) - kept)
    return detail
