"""Free-text matching with the negation and "someone else" guards that clinical text needs.

A phrase counts only when it is affirmed: "denies numbness", "no weakness", "r/o multiple
sclerosis", "family history of multiple sclerosis" or "multiple sclerosis ruled out" do not count.
The guard looks at the same clause (up to a sentence break or "but"), a few words either side.
"""

from __future__ import annotations

import bisect
import re

_CLAUSE_BREAK = re.compile(r"[.;!?\n]|\bbut\b|\bhowever\b", re.IGNORECASE)
_NEGATION_BEFORE = re.compile(
    r"(?<![\w-])(?:no|not|non|denies|denied|deny|without|negative for|neg for|ruled out|rule out|r/o|free of|"
    r"absence of|absent|never|nor|resolved|history negative for|"
    r"family history(?: of)?|fh:?|fhx|mother|father|sister|brother|sibling|parent|aunt|uncle|"
    r"grandmother|grandfather|cousin|son|daughter|relative)(?![\w-])",
    re.IGNORECASE,
)
_NEGATION_AFTER = re.compile(
    r"^\W*(?:(?:was|is|has been|been)\s+)?(?:ruled out|excluded|unlikely|not confirmed|negative|denied|absent|"
    r"in (?:his|her|the) (?:mother|father|sister|brother|family)|in family)(?![\w-])",
    re.IGNORECASE,
)
_WORDS_BEFORE = 6
# The guards read the clause around a phrase, at most this many characters either side of it. A
# text that repeats a negated phrase ("no back pain. " x 40,000) would otherwise cost time
# quadratic in its length (minutes for half a megabyte): the clause breaks are found once per text,
# and six words and a negation fit in the window many times over.
_WINDOW = 300
_SPACE = re.compile(r"\s")


def _clause_before(text: str, start: int, break_ends: list[int]) -> str:
    """The last words before `start`, in its clause."""
    i = bisect.bisect_right(break_ends, start)
    clause_start = break_ends[i - 1] if i else 0
    low = max(clause_start, start - _WINDOW)
    head = text[low:start]
    if low > clause_start:  # the window begins inside the clause, maybe inside a word: whole words only
        space = _SPACE.search(head)
        head = head[space.end() :] if space else ""
    return " ".join(head.split()[-_WORDS_BEFORE:])


def _clause_after(text: str, end: int, break_starts: list[int]) -> str:
    """The start of the clause after `end`."""
    i = bisect.bisect_left(break_starts, end)
    clause_end = break_starts[i] if i < len(break_starts) else len(text)
    return text[end : min(clause_end, end + _WINDOW)]


def affirmed_phrase(text: str | None, pattern: re.Pattern[str] | None) -> str | None:
    """The first phrase of `pattern` that `text` affirms, or None."""
    if not text or pattern is None:
        return None
    breaks: list[re.Match[str]] | None = None
    for match in pattern.finditer(text):
        if breaks is None:  # found once, only for a text that holds a phrase
            breaks = list(_CLAUSE_BREAK.finditer(text))
            break_ends, break_starts = [b.end() for b in breaks], [b.start() for b in breaks]
        if _NEGATION_BEFORE.search(_clause_before(text, match.start(), break_ends)):
            continue
        if _NEGATION_AFTER.search(_clause_after(text, match.end(), break_starts)):
            continue
        return match.group(0)
    return None


def any_phrase(text: str | None, pattern: re.Pattern[str] | None) -> str | None:
    """The first phrase of `pattern` in `text`, negated or not (for context such as laterality)."""
    if not text or pattern is None:
        return None
    match = pattern.search(text)
    return match.group(0) if match else None
