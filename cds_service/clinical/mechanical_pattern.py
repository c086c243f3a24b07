"""Mechanical pattern on the back-pain evidence (RULES.md 1): mechanical low back pain 279040009,
low back strain 300956001, or text such as "worse with lifting" / "improves with rest". It adds the
"consider dual causes" line and never suppresses a card.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import evidence, finding_code, match_codes, resource_texts
from cds_service.clinical.text import affirmed_phrase


def mechanical_findings(back_pain_resources: Iterable[Any]) -> list[Finding]:
    concept = valuesets.concepts("mechanical_pattern")["mechanical"]
    found: list[Finding] = []
    for resource in back_pain_resources:
        matched = match_codes(finding_code(resource), concept)
        if not matched:
            text = next((t for t in resource_texts(resource) if affirmed_phrase(t, concept.text)), None)
            matched = f'text "{text}"' if text else None
        if matched:
            found.append(Finding(concept.key, concept.label, evidence(resource, matched)))
    return found
