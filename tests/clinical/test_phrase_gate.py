"""PhraseGate (valuesets.py) gives the answer of one regex of all its phrases, on every text.

The gate searches only the phrase groups of the words a text contains; the reference is the plain
alternation of every phrase (`phrase_pattern`). Checked for every phrase list the service gates on,
against every string of the fixtures and the phrases themselves, bent at their word boundaries.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical import valuesets
from cds_service.clinical.relevance import RelevanceFilter

ROOT = Path(__file__).resolve().parents[2]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _phrase_lists() -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for name in valuesets.ALL_VALUE_SETS:
        doc = valuesets.load(name)
        lists[name] = [p for concept in doc.get("concepts", {}).values() for p in concept.get("text", [])]
        for key, value in doc.items():
            if key.endswith("Text") and isinstance(value, list):
                lists[f"{name}.{key}"] = value
    lists["all findings"] = [
        p
        for name in ("multiple_sclerosis", "back_pain", "red_flags", "cord_features", "mechanical_pattern")
        for p in lists[name]
    ]
    return {name: phrases for name, phrases in lists.items() if phrases}


PHRASE_LISTS = _phrase_lists()


def _texts() -> list[str]:
    rng = random.Random(20261201)
    fixture_strings = {
        s
        for folder in ("patient-view", "order-entry")
        for path in sorted((ROOT / "fixtures" / folder).glob("*.json"))
        for s in _strings(json.loads(path.read_text()))
    }
    phrases = sorted({p for phrases in PHRASE_LISTS.values() for p in phrases})
    bent = []
    for p in phrases:
        bent += [
            p,
            p.upper(),
            f"no {p}",
            f"{p}s",
            f"x{p}",
            f"{p}x",
            f"-{p}",
            f"{p}-",
            f"_{p}",
            f"({p})",
            f"{p}.",
            f"a {p} b",
            p.replace(" ", "  "),
            p.replace(" ", "-"),
            p[1:],
            p[:-1],
        ]
    mixed = [" ".join(rng.sample(phrases, 3)) for _ in range(300)] + [
        " ".join(rng.sample(sorted(fixture_strings), 2)) for _ in range(300)
    ]
    return sorted(fixture_strings) + bent + mixed


TEXTS = _texts()


@pytest.mark.parametrize("name", sorted(PHRASE_LISTS))
def test_the_gate_answers_as_one_regex_of_all_phrases(name: str) -> None:
    phrases = PHRASE_LISTS[name]
    gate, reference = valuesets.PhraseGate.of(phrases), valuesets.phrase_pattern(phrases)
    assert gate is not None and reference is not None
    found = 0
    for text in TEXTS:
        expected = reference.search(text) is not None
        assert gate.search(text) is expected, (name, text)
        found += expected
    assert found > 0 and found < len(TEXTS)


def test_the_relevance_vocabulary_is_built_from_the_value_sets() -> None:
    relevance = RelevanceFilter.from_value_sets()
    vocabulary = relevance.findings
    assert vocabulary.names_in("new numbness in both legs")
    assert not vocabulary.names_in("Heart rate")
    assert vocabulary.names_in("ibuprofen 400 mg tablet")  # analgesics
    assert vocabulary.names_in("electric shock down the spine")  # cord_features.shockText
    assert relevance.windowed.names_code("http://loinc.org", "72514-3")  # pain severity: in the window only
    assert vocabulary.names_code("http://www.nlm.nih.gov/research/umls/rxnorm", "5640")  # ibuprofen
    assert vocabulary.names_code("http://hl7.org/fhir/sid/icd-10-cm", "G35.D")  # MS by ICD-10 prefix
    assert not vocabulary.names_code("http://loinc.org", "8867-4")  # heart rate


def test_a_phrase_without_a_word_is_refused() -> None:
    with pytest.raises(ValueError):
        valuesets.PhraseGate.of(["back pain", "--"])
