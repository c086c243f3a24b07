"""Features of central / cord origin that are not red flags (RULES.md 1), counted at any date while
active: Lhermitte's sign (text only: "Lhermitte", "barber chair", or an electric-shock sensation
with neck flexion), neuropathic / central pain, burning sensation, dysesthesia, spasticity, spasm /
painful tonic spasm, and MS of the spinal cord.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import (
    code_match,
    codings,
    condition_is_active,
    evidence,
    observation_is_negative,
    observation_is_usable,
    resource_texts,
    text_match,
    texts,
)
from cds_service.clinical.text import affirmed_phrase

MS_OF_SPINAL_CORD = "ms_spinal_cord"


def _shock_with_neck_flexion(text: str) -> bool:
    shock = valuesets.phrases("cord_features", "shockText")
    flexion = valuesets.phrases("cord_features", "neckFlexionText")
    return bool(affirmed_phrase(text, shock) and affirmed_phrase(text, flexion))


def cord_feature_findings(
    conditions: Iterable[Any], observations: Iterable[Any], ms: Iterable[Finding]
) -> list[Finding]:
    concepts = valuesets.concepts("cord_features").values()
    found = [f for f in ms if f.concept == MS_OF_SPINAL_CORD]
    resources = [c for c in conditions if condition_is_active(c)] + [
        o for o in observations if observation_is_usable(o)
    ]
    quick = valuesets.screen("cord_features", "shockText")
    for resource in resources:
        is_observation = resource.get_resource_type() == "Observation"
        if is_observation and observation_is_negative(resource):
            continue
        # Read once; each concept then looks at the code (codings, then texts), an Observation's
        # value codings, and every text of the resource (value, components, notes, body site).
        all_texts = resource_texts(resource)
        code_codings = codings(resource.code)
        value_codings = codings(resource.valueCodeableConcept) if is_observation else []
        if not quick.may_match(code_codings + value_codings, all_texts):
            continue
        code_texts = texts(resource.code)
        for concept in concepts:
            matched = (
                code_match(code_codings, concept)
                or text_match(code_texts, concept)
                or code_match(value_codings, concept)
            )
            if not matched:
                lhermitte = concept.key == "lhermitte"
                matched = next(
                    (
                        f'text "{t}"'
                        for t in all_texts
                        if affirmed_phrase(t, concept.text) or (lhermitte and _shock_with_neck_flexion(t))
                    ),
                    None,
                )
            if matched:
                found.append(Finding(concept.key, concept.label, evidence(resource, matched)))
    return found
