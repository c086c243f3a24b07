"""MS diagnosis rule (RULES.md 1): which Conditions establish multiple sclerosis.

Counts: SNOMED MS concepts, ICD-10 codes under G35 (any edition), or, when no coding matches, the
text "multiple sclerosis" affirmed for this patient. Clinically isolated syndrome and demyelinating
disease are NOT MS: they are kept as context only, and their code wins over any text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import condition_is_active, evidence, match_codes, match_concept


def ms_findings(conditions: Iterable[Any]) -> tuple[list[Finding], list[Finding]]:
    """(MS findings, demyelinating-context findings) from the patient's Conditions."""
    concepts = valuesets.concepts("multiple_sclerosis")
    ms, spinal, not_ms = concepts["multiple_sclerosis"], concepts["ms_spinal_cord"], concepts["demyelinating_not_ms"]
    found: list[Finding] = []
    context: list[Finding] = []
    for condition in conditions:
        if not condition_is_active(condition):
            continue
        demyelinating = match_codes(condition.code, not_ms)
        if demyelinating:
            context.append(Finding(not_ms.key, not_ms.label, evidence(condition, demyelinating)))
            continue
        matched = match_concept(condition.code, ms)
        if matched:
            cord = match_concept(condition.code, spinal)
            concept = spinal if cord else ms
            found.append(Finding(concept.key, concept.label, evidence(condition, cord or matched)))
            continue
        context_text = match_concept(condition.code, not_ms)
        if context_text:
            context.append(Finding(not_ms.key, not_ms.label, evidence(condition, context_text)))
    return found, context
