"""The clinical core on its own: pure, deterministic, "now" injected.

Decisions are built here from facts directly, so each rule of RULES.md 2 is visible in isolation.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service.clinical.decision import Level, decide
from cds_service.clinical.facts import ClinicalFacts, Evidence, Finding, SpinalMri
from cds_service.clinical.text import affirmed_phrase
from cds_service.clinical.valuesets import phrase_pattern

NOW = dt.date(2026, 11, 25)


def finding(concept: str, ref: str, date: dt.date | None, group: str = "") -> Finding:
    rt, rid = ref.split("/")
    return Finding(concept, concept, Evidence(rt, rid, concept, date), group)


MS = finding("multiple_sclerosis", "Condition/ms", dt.date(2015, 1, 1))
BACK = finding("back_pain", "Condition/lbp", dt.date(2026, 11, 1))


def facts(**kw) -> ClinicalFacts:
    base = dict(now=NOW, multiple_sclerosis=(MS,), back_pain=(BACK,))
    base.update(kw)
    return ClinicalFacts(**base)


def mri(date: dt.date, *regions: str) -> SpinalMri:
    return SpinalMri(Evidence("ImagingStudy", "mri", "MRI", date), frozenset(regions), "without-and-with")


def test_no_ms_or_no_back_pain_gives_no_card() -> None:
    assert decide(facts(multiple_sclerosis=())).level is Level.NONE
    assert decide(facts(back_pain=())).level is Level.NONE
    red_flag = finding("weakness", "Condition/w", dt.date(2026, 11, 20), "motor")
    assert decide(facts(multiple_sclerosis=(), new_red_flags=(red_flag,))).level is Level.NONE


def test_levels_take_the_highest_met() -> None:
    assert decide(facts()).level is Level.BASELINE
    cord = finding("lhermitte", "Observation/l", None)
    assert decide(facts(cord_features=(cord,))).level is Level.CORD_FEATURES
    poor = finding("nsaid_trial", "MedicationRequest/n", dt.date(2026, 10, 1))
    assert decide(facts(poor_analgesic_response=(poor,))).level is Level.CORD_FEATURES
    new = finding("weakness", "Condition/w", dt.date(2026, 11, 20), "motor")
    assert decide(facts(new_red_flags=(new,), cord_features=(cord,))).level is Level.URGENT


def test_chronic_red_flags_never_escalate() -> None:
    old = finding("weakness", "Condition/w", dt.date(2022, 1, 1), "motor")
    assert decide(facts(chronic_red_flags=(old,))).level is Level.BASELINE


def test_mechanical_pattern_adds_dual_causes_and_never_suppresses() -> None:
    mech = finding("mechanical", "Condition/lbp", None)
    decision = decide(facts(mechanical_pattern=(mech,)))
    assert decision.level is Level.BASELINE and decision.consider_dual_causes


def test_mri_recommended_only_at_urgent_and_cord_features() -> None:
    assert decide(facts()).mri.recommended is False
    cord = finding("spasticity", "Condition/s", None)
    assert decide(facts(cord_features=(cord,))).mri.recommended is True


def test_recent_cord_mri_removes_the_suggestion_unless_a_red_flag_is_newer() -> None:
    study = mri(dt.date(2026, 10, 1), "cervical", "thoracic")
    advice = decide(facts(spinal_mri=(study,))).mri
    assert not advice.suggest and advice.recent_study == study

    older_flag = finding("weakness", "Condition/w", dt.date(2026, 9, 20), "motor")
    assert not decide(facts(spinal_mri=(study,), new_red_flags=(older_flag,))).mri.suggest

    newer_flag = finding("weakness", "Condition/w", dt.date(2026, 11, 10), "motor")
    advice = decide(facts(spinal_mri=(study,), new_red_flags=(newer_flag,))).mri
    assert advice.suggest and advice.recommended and advice.newer_red_flags == (newer_flag,)


@pytest.mark.parametrize(
    "study, suggested",
    [
        (mri(dt.date(2026, 11, 1), "lumbar"), True),  # lumbar only: does not cover the cord
        (mri(dt.date(2026, 11, 1), "cervical"), True),  # thoracic cord not imaged
        (mri(dt.date(2026, 8, 1), "cervical", "thoracic"), True),  # older than the 90-day window
        (mri(dt.date(2026, 11, 1), "cervical", "thoracic", "lumbar"), False),
    ],
)
def test_which_studies_cover_the_cord(study: SpinalMri, suggested: bool) -> None:
    assert decide(facts(spinal_mri=(study,))).mri.suggest is suggested


def test_not_documented_lists_the_features_worth_asking_about() -> None:
    assert decide(facts()).not_documented == (
        "lhermitte",
        "paroxysmal_spasm",
        "analgesic_response",
        "bladder",
        "gait",
        "sensory",
    )
    bladder = finding("bladder", "Condition/b", dt.date(2026, 11, 20), "bladder")
    lhermitte = finding("lhermitte", "Observation/l", None)
    assert decide(facts(new_red_flags=(bladder,), cord_features=(lhermitte,))).not_documented == (
        "paroxysmal_spasm",
        "analgesic_response",
        "gait",
        "sensory",
    )


def test_the_decision_is_deterministic() -> None:
    f = facts(cord_features=(finding("spasm", "Condition/s", None),))
    assert decide(f) == decide(f)


PHRASES = phrase_pattern(["multiple sclerosis", "weakness", "numbness"])


@pytest.mark.parametrize(
    "text, affirmed",
    [
        ("Multiple sclerosis, relapsing-remitting", True),
        ("History of multiple sclerosis since 2015", True),
        ("Family history of multiple sclerosis", False),
        ("FH: multiple sclerosis (mother)", False),
        ("Mother has multiple sclerosis", False),
        ("r/o multiple sclerosis", False),
        ("Multiple sclerosis ruled out by MRI", False),
        ("No evidence of multiple sclerosis", False),
        ("Denies weakness or numbness", False),
        ("Back pain without weakness", False),
        ("No fever. New weakness of both legs", True),
        ("Denies fever but reports numbness in both feet", True),
        ("Amyotrophic lateral sclerosis", False),
    ],
)
def test_text_is_counted_only_when_affirmed(text: str, affirmed: bool) -> None:
    assert (affirmed_phrase(text, PHRASES) is not None) is affirmed
