"""Red flags of spinal cord involvement (RULES.md 1).

Weakness / paresis, impaired balance / ataxia / abnormal gait, bladder and bowel dysfunction,
numbness / paresthesia / dysesthesia, saddle numbness, cauda equina syndrome, transverse myelitis,
cord compression and hyperreflexia, from Conditions or Observations (by code or affirmed text).

A red flag is NEW when its date (onset, else effective time, else recording) is inside the look-back
window; an older one is chronic context and never escalates the card. "Bilateral" is read from text
(no verified laterality code exists in TERMINOLOGY.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import (
    clinical_date,
    codings,
    condition_is_active,
    condition_is_erroneous,
    evidence,
    match_codes,
    match_concept,
    observation_is_negative,
    observation_is_usable,
    observation_value_texts,
    resource_texts,
    texts,
    within_days,
)
from cds_service.clinical.text import affirmed_phrase, any_phrase


def _observation_match(observation: Any, concept: valuesets.Concept) -> str | None:
    if observation_is_negative(observation):
        return None
    matched = match_concept(observation.code, concept) or match_codes(observation.valueCodeableConcept, concept)
    if matched:
        return matched
    for text in observation_value_texts(observation):
        if affirmed_phrase(text, concept.text):
            return f'text "{text}"'
    return None


def red_flag_findings(
    conditions: Iterable[Any], observations: Iterable[Any], now: dt.date, lookback_days: int
) -> tuple[list[Finding], list[Finding]]:
    """(new red flags, chronic red flags)."""
    concepts = valuesets.concepts("red_flags").values()
    bilateral = valuesets.phrases("red_flags", "bilateralText")
    new: list[Finding] = []
    chronic: list[Finding] = []
    candidates: list[tuple[Any, bool]] = []
    for condition in conditions:
        if condition_is_erroneous(condition):
            continue
        is_new = within_days(clinical_date(condition), now, lookback_days)
        if is_new or condition_is_active(condition):
            candidates.append((condition, is_new))
    for observation in observations:
        if observation_is_usable(observation):
            candidates.append((observation, within_days(clinical_date(observation), now, lookback_days)))

    quick = valuesets.screen("red_flags")
    for resource, is_new in candidates:
        is_observation = resource.get_resource_type() == "Observation"
        if is_observation:
            codings_seen = list(codings(resource.code)) + list(codings(resource.valueCodeableConcept))
            texts_seen = texts(resource.code) + observation_value_texts(resource)
        else:
            codings_seen, texts_seen = list(codings(resource.code)), texts(resource.code)
        if not quick.may_match(codings_seen, texts_seen):
            continue
        for concept in concepts:
            matched = _observation_match(resource, concept) if is_observation else match_concept(resource.code, concept)
            if not matched:
                continue
            both_sides = any(any_phrase(t, bilateral) for t in resource_texts(resource))
            finding = Finding(concept.key, concept.label, evidence(resource, matched), concept.extra.get("group", ""), both_sides)
            (new if is_new else chronic).append(finding)
    return new, chronic
