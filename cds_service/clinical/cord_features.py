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
    add_coded,
    add_named,
    codings,
    condition_is_active,
    evidence,
    observation_is_negative,
    observation_is_usable,
    resource_texts,
    texts,
)
from cds_service.clinical.text import affirmed_phrase
from cds_service.clinical.valuesets import Concept

MS_OF_SPINAL_CORD = "ms_spinal_cord"
LHERMITTE = "lhermitte"


def _affirms(text: str, concept: Concept) -> bool:
    """A phrase of the concept affirmed; for Lhermitte's sign also an electric-shock sensation with
    neck flexion, both affirmed."""
    if affirmed_phrase(text, concept.text):
        return True
    return concept.key == LHERMITTE and bool(
        affirmed_phrase(text, valuesets.phrases("cord_features", "shockText"))
        and affirmed_phrase(text, valuesets.phrases("cord_features", "neckFlexionText"))
    )


def cord_feature_findings(
    conditions: Iterable[Any], observations: Iterable[Any], ms: Iterable[Finding]
) -> list[Finding]:
    index = valuesets.index("cord_features", also=((LHERMITTE, "shockText"),))
    found_features = [f for f in ms if f.concept == MS_OF_SPINAL_CORD]
    resources = [c for c in conditions if condition_is_active(c)] + [
        o for o in observations if observation_is_usable(o) and not observation_is_negative(o)
    ]
    for resource in resources:
        # Each feature's first match: the code (codings, then texts), an Observation's value
        # codings, then every text of the resource (value, components, notes, body site).
        found: dict[str, str] = {}
        add_coded(found, index, codings(resource.code))
        add_named(found, index, texts(resource.code))
        if resource.get_resource_type() == "Observation":
            add_coded(found, index, codings(resource.valueCodeableConcept))
        add_named(found, index, resource_texts(resource), _affirms)
        found_features += [
            Finding(concept.key, concept.label, evidence(resource, found[concept.key]))
            for concept in index.concepts
            if concept.key in found
        ]
    return found_features
