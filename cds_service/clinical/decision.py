"""The decision (RULES.md 2): no card, or one card at the highest level met, and the MRI advice.

    urgent         MS + back pain + at least one NEW cord red flag
    cord-features  MS + back pain + any cord feature, or poor response to NSAIDs / rest
    baseline       MS + back pain only
    none           no MS, or no back pain

The spinal-MRI suggestion is recommended at urgent and cord-features, offered (not recommended)
at baseline, and left out when a recent MRI already covered the cervical and thoracic cord, unless
a red flag is newer than that study.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.facts import ClinicalFacts, Finding, SpinalMri


class Level(enum.StrEnum):
    NONE = "none"
    BASELINE = "baseline"
    CORD_FEATURES = "cord-features"
    URGENT = "urgent"


# Distinguishing features worth asking about when not documented (RULES.md 2), in display order.
DISTINGUISHING_FEATURES = ("lhermitte", "paroxysmal_spasm", "analgesic_response", "bladder", "gait", "sensory")


@dataclass(frozen=True)
class MriAdvice:
    suggest: bool
    recommended: bool
    recent_study: SpinalMri | None = None  # the latest study covering the cord inside the recent window
    newer_red_flags: tuple[Finding, ...] = ()  # red flags dated after that study: why we suggest anyway
    recent_partial_studies: tuple[SpinalMri, ...] = ()  # recent spinal MRIs that miss the cord (e.g. lumbar only)


@dataclass(frozen=True)
class Decision:
    level: Level
    facts: ClinicalFacts
    not_documented: tuple[str, ...] = ()
    consider_dual_causes: bool = False
    mri: MriAdvice | None = None
    quieted_by: Any = None  # an alert_fatigue.OverrideNote: show as information after an override
    # An alert_fatigue.OverrideNote: there was an override, but a new red flag brings the card back at full level.
    raised_again_after: Any = None

    @property
    def shows_card(self) -> bool:
        return self.level is not Level.NONE


def _level(facts: ClinicalFacts) -> Level:
    if not (facts.has_ms and facts.has_back_pain):
        return Level.NONE
    if facts.new_red_flags:
        return Level.URGENT
    if facts.cord_features or facts.poor_analgesic_response:
        return Level.CORD_FEATURES
    return Level.BASELINE


def _not_documented(facts: ClinicalFacts) -> tuple[str, ...]:
    cord = {f.concept for f in facts.cord_features}
    groups = {f.group for f in facts.new_red_flags + facts.chronic_red_flags}
    found = {
        "lhermitte": "lhermitte" in cord,
        "paroxysmal_spasm": bool(cord & {"spasm", "paroxysmal_symptom"}),
        "analgesic_response": bool(facts.poor_analgesic_response),
        "bladder": bool(groups & {"bladder", "bowel"}),
        "gait": bool(groups & {"gait", "motor"}),
        "sensory": "sensory" in groups,
    }
    return tuple(key for key in DISTINGUISHING_FEATURES if not found[key])


def _study_date(study: SpinalMri) -> dt.date:
    """The date of a study already known to be recent (so dated)."""
    if study.evidence.date is None:
        raise ValueError("an undated study is never recent")
    return study.evidence.date


def _mri_advice(facts: ClinicalFacts, level: Level) -> MriAdvice:
    recommended = level in (Level.URGENT, Level.CORD_FEATURES)
    window = facts.settings.recent_mri_days
    recent = [
        s for s in facts.spinal_mri if s.evidence.date is not None and 0 <= (facts.now - s.evidence.date).days <= window
    ]
    covering = sorted((s for s in recent if s.covers_cord), key=_study_date)
    partial = tuple(s for s in recent if not s.covers_cord)
    if not covering:
        return MriAdvice(suggest=True, recommended=recommended, recent_partial_studies=partial)
    latest = covering[-1]
    latest_date = _study_date(latest)
    newer = tuple(f for f in facts.new_red_flags if f.evidence.date is not None and f.evidence.date > latest_date)
    return MriAdvice(
        suggest=bool(newer),
        recommended=recommended and bool(newer),
        recent_study=latest,
        newer_red_flags=newer,
        recent_partial_studies=partial,
    )


def decide(facts: ClinicalFacts) -> Decision:
    """The decision for one patient's facts. Pure: the same facts always give the same decision."""
    level = _level(facts)
    if level is Level.NONE:
        return Decision(level=level, facts=facts)
    return Decision(
        level=level,
        facts=facts,
        not_documented=_not_documented(facts),
        consider_dual_causes=bool(facts.mechanical_pattern),
        mri=_mri_advice(facts, level),
    )
