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
from collections.abc import Iterable
from typing import Any

from cds_service.clinical import valuesets
from cds_service.clinical.facts import Finding
from cds_service.clinical.reading import (
    add_coded,
    add_named,
    clinical_date,
    codings,
    condition_is_active,
    condition_is_erroneous,
    evidence,
    observation_is_negative,
    observation_is_usable,
    observation_value_texts,
    resource_texts,
    texts,
    within_days,
)
from cds_service.clinical.text import any_phrase


def red_flag_findings(
    conditions: Iterable[Any], observations: Iterable[Any], now: dt.date, lookback_days: int
) -> tuple[list[Finding], list[Finding]]:
    """(new red flags, chronic red flags)."""
    index = valuesets.index("red_flags")
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
        if observation_is_usable(observation) and not observation_is_negative(observation):
            candidates.append((observation, within_days(clinical_date(observation), now, lookback_days)))

    for resource, is_new in candidates:
        # Each red flag's first match: the code's codings, the code's texts, then (an Observation's)
        # value codings and value texts.
        found: dict[str, str] = {}
        add_coded(found, index, codings(resource.code))
        add_named(found, index, texts(resource.code))
        if resource.get_resource_type() == "Observation":
            add_coded(found, index, codings(resource.valueCodeableConcept))
            add_named(found, index, observation_value_texts(resource))
        if not found:
            continue
        both_sides = any(any_phrase(t, bilateral) for t in resource_texts(resource))
        for concept in index.concepts:
            if concept.key in found:
                finding = Finding(
                    concept.key,
                    concept.label,
                    evidence(resource, found[concept.key]),
                    concept.extra.get("group", ""),
                    both_sides,
                )
                (new if is_new else chronic).append(finding)
    return new, chronic
