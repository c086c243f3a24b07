"""The negation guards read a window around each phrase (clinical/text.py), so that a long text
costs time linear in its length. On texts whose clauses fit in the window they answer exactly as
the whole-text reading did (the reference below), and a long, repetitive text is read quickly."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.clinical import text as guards
from cds_service.clinical import valuesets
from tests.fuzzing import fuzz_examples


def reference_affirmed_phrase(text: str | None, pattern: re.Pattern[str] | None) -> str | None:
    """The guards as they were before the window: every clause read from the whole text."""
    if not text or pattern is None:
        return None
    for match in pattern.finditer(text):
        head = text[: match.start()]
        breaks = list(guards._CLAUSE_BREAK.finditer(head))
        clause = head[breaks[-1].end() :] if breaks else head
        if guards._NEGATION_BEFORE.search(" ".join(clause.split()[-guards._WORDS_BEFORE :])):
            continue
        tail = text[match.end() :]
        brk = guards._CLAUSE_BREAK.search(tail)
        if guards._NEGATION_AFTER.search(tail[: brk.start()] if brk else tail):
            continue
        return match.group(0)
    return None


BACK_PAIN = valuesets.concepts("back_pain")["back_pain"].text
WORDS = ["back pain", "low back pain", "no", "denies", "not", "but", "however", "ruled out", "mother", "was", "is",
         "negative", "pain", "back", "lumbar", "the", "patient", "reports", "severe", "x" * 40]  # fmt: skip
SEPARATORS = [" ", "  ", ". ", "; ", ", ", "\n", " - ", "? "]


@settings(max_examples=fuzz_examples(300), deadline=None, database=None)
@given(parts=st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=60))
def test_the_windowed_guards_answer_as_the_whole_text_reading(parts: list[tuple[str, str]]) -> None:
    text = "".join(word + sep for word, sep in parts)
    assert guards.affirmed_phrase(text, BACK_PAIN) == reference_affirmed_phrase(text, BACK_PAIN)


def test_a_long_text_of_negated_phrases_is_read_in_linear_time() -> None:
    """Once more than ten minutes for half a megabyte. Not a speed assertion: a bound ~100x above
    the time it takes, so only the quadratic reading can fail it."""
    text = "no back pain. " * 40_000 + "severe back pain"
    started = time.perf_counter()
    assert guards.affirmed_phrase(text, BACK_PAIN) == "back pain"
    assert time.perf_counter() - started < 60
