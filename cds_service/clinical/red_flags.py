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
    clinical_date,
    code_match,
    codings,
    condition_is_active,
    condition_is_erroneous,
    evidence,
    observation_is_negative,
    observation_is_usable,
    observation_value_texts,
    resource_texts,
    text_match,
    texts,
    within_days,
)
from cds_service.clinical.text import any_phrase


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
        # Read the resource once; then each concept looks, in order, at the code's codings, the
        # code's texts and (an Observation's) value codings and value texts.
        code_codings, code_texts = codings(resource.code), texts(resource.code)
        value_codings: list[Any] = []
        value_texts: list[str] = []
        is_observation = resource.get_resource_type() == "Observation"
        if is_observation:
            value_codings, value_texts = codings(resource.valueCodeableConcept), observation_value_texts(resource)
        if not quick.may_match(code_codings + value_codings, code_texts + value_texts):
            continue
        if is_observation and observation_is_negative(resource):
            continue  # it records the absence of the finding
        both_sides: bool | None = None
        for concept in concepts:
            matched = (
                code_match(code_codings, concept)
                or text_match(code_texts, concept)
                or code_match(value_codings, concept)
                or text_match(value_texts, concept)
            )
            if not matched:
                continue
            if both_sides is None:
                both_sides = any(any_phrase(t, bilateral) for t in resource_texts(resource))
            finding = Finding(
                concept.key, concept.label, evidence(resource, matched), concept.extra.get("group", ""), both_sides
            )
            (new if is_new else chronic).append(finding)
    return new, chronic
