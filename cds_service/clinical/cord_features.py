"""Features of central / cord origin that are not red flags (RULES.md 1), counted at any date while
active: Lhermitte's sign (text only: "Lhermitte", "barber chair", or an electric-shock sensation
with neck flexion), neuropathic / central pain, burning sensation, dysesthesia, spasticity, spasm /
painful tonic spasm, and MS of the spinal cord.
"""

from __future__ import annotations

from typing import Any, Iterable

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import (
    codings,
    condition_is_active,
    evidence,
    match_codes,
    match_concept,
    observation_is_negative,
    observation_is_usable,
    resource_texts,
)
from cds_service.clinical.text import affirmed_phrase

MS_OF_SPINAL_CORD = "ms_spinal_cord"


def _shock_with_neck_flexion(text: str) -> bool:
    shock = valuesets.phrases("cord_features", "shockText")
    flexion = valuesets.phrases("cord_features", "neckFlexionText")
    return bool(affirmed_phrase(text, shock) and affirmed_phrase(text, flexion))


def _match(resource: Any, concept: valuesets.Concept, all_texts: list[str]) -> str | None:
    is_observation = resource.get_resource_type() == "Observation"
    matched = match_concept(resource.code, concept)
    if matched:
        return matched
    if is_observation:
        matched = match_codes(resource.valueCodeableConcept, concept)
        if matched:
            return matched
    for text in all_texts:
        if affirmed_phrase(text, concept.text) or (concept.key == "lhermitte" and _shock_with_neck_flexion(text)):
            return f'text "{text}"'
    return None


def cord_feature_findings(conditions: Iterable[Any], observations: Iterable[Any], ms: Iterable[Finding]) -> list[Finding]:
    concepts = valuesets.concepts("cord_features").values()
    found = [f for f in ms if f.concept == MS_OF_SPINAL_CORD]
    resources = [c for c in conditions if condition_is_active(c)] + [o for o in observations if observation_is_usable(o)]
    quick = valuesets.screen("cord_features", "shockText")
    for resource in resources:
        is_observation = resource.get_resource_type() == "Observation"
        if is_observation and observation_is_negative(resource):
            continue
        all_texts = resource_texts(resource)
        codings_seen = list(codings(resource.code)) + (list(codings(resource.valueCodeableConcept)) if is_observation else [])
        if not quick.may_match(codings_seen, all_texts):
            continue
        for concept in concepts:
            matched = _match(resource, concept, all_texts)
            if matched:
                found.append(Finding(concept.key, concept.label, evidence(resource, matched)))
    return found
