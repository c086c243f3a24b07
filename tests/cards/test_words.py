"""Evidence in clinical words: the chart's words without system names or codes, and labelled dates."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service.cards.words import MAX_WHAT, chart_words, codings_in, evidence_words, md, short_date
from cds_service.clinical.facts import Evidence


@pytest.mark.parametrize(
    ("matched", "words"),
    [
        ("SNOMED CT 279039007 Low back pain", "Low back pain"),
        ("ICD-10-CM G35.A Relapsing-remitting multiple sclerosis", "Relapsing-remitting multiple sclerosis"),
        ("ICD-10 M54.5 Low back pain", "Low back pain"),
        ('chief complaint: "Low back pain for 3 weeks"', "Chief complaint: Low back pain for 3 weeks"),
        ("order reason: SNOMED CT 24700007 Multiple sclerosis", "Multiple sclerosis"),
        ("visit reason: SNOMED CT 279039007 Low back pain", "Low back pain"),
        ("pain score at SNOMED CT 52612000 Lumbar region", "Pain score at Lumbar region"),
        ('text "Lumbago"', "Lumbago"),
        ("NSAID for more than 14 days: RxNorm 142442 Naproxen sodium", "NSAID for more than 14 days: Naproxen sodium"),
        ("http://example.org/local-codes L-17 Back ache", "Back ache"),
        ("MRI of lumbar spine (SNOMED CT 1 ; LOINC 2)", "MRI of lumbar spine"),
        ("SNOMED CT 24700007", "Fallback label"),  # a code without a display: the concept's label
        ('text "SNOMED CT 123 is what the note says"', "SNOMED CT 123 is what the note says"),  # chart text as written
    ],
)
def test_chart_words(matched: str, words: str) -> None:
    assert chart_words(matched, "Fallback label") == words


def test_long_chart_text_is_clipped() -> None:
    words = chart_words('text "' + "back pain " * 30 + '"', "Back pain")
    assert len(words) == MAX_WHAT and words.endswith("…")


def test_short_date_is_unambiguous() -> None:
    assert short_date(dt.date(2026, 10, 20)) == "20 Oct 2026"
    assert short_date(dt.date(2026, 1, 2)) == "2 Jan 2026"


def test_evidence_words_say_where_and_what_the_date_is() -> None:
    evidence = Evidence("Condition", "pv01-lbp", "SNOMED CT 279039007 Low back pain", dt.date(2026, 10, 20))
    labelled = Evidence(*evidence.__dict__.values())
    object.__setattr__(labelled, "where", "problem list")
    object.__setattr__(labelled, "date_label", "since")
    assert (
        evidence_words(labelled, "Back pain", "date not recorded") == "Low back pain (problem list, since 20 Oct 2026)"
    )


def test_chart_text_is_markdown_safe() -> None:
    assert md("a *b* [c](d)\n# e") == "a \\*b\\* \\[c\\](d) \\# e"


def test_codings_in_gives_the_reason_codings() -> None:
    assert codings_in("order reason: SNOMED CT 279039007 Low back pain") == [
        {"system": "http://snomed.info/sct", "code": "279039007", "display": "Low back pain"}
    ]
    assert codings_in("ICD-10 M54.5 Low back pain") == []  # a national edition's URI is not known from the name
    assert codings_in('text "Lumbago"') == []
