"""Free-text matching with the negation and "someone else" guards that clinical text needs.

A phrase counts only when it is affirmed: "denies numbness", "no weakness", "r/o multiple
sclerosis", "family history of multiple sclerosis" or "multiple sclerosis ruled out" do not count.
The guard looks at the same clause (up to a sentence break or "but"), a few words either side.
"""

from __future__ import annotations

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


def _clause_before(text: str, start: int) -> str:
    head = text[:start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    clause = head[breaks[-1].end() :] if breaks else head
    return " ".join(clause.split()[-_WORDS_BEFORE:])


def _clause_after(text: str, end: int) -> str:
    tail = text[end:]
    brk = _CLAUSE_BREAK.search(tail)
    return tail[: brk.start()] if brk else tail


def affirmed_phrase(text: str | None, pattern: re.Pattern[str] | None) -> str | None:
    """The first phrase of `pattern` that `text` affirms, or None."""
    if not text or pattern is None:
        return None
    for match in pattern.finditer(text):
        if _NEGATION_BEFORE.search(_clause_before(text, match.start())):
            continue
        if _NEGATION_AFTER.search(_clause_after(text, match.end())):
            continue
        return match.group(0)
    return None


def any_phrase(text: str | None, pattern: re.Pattern[str] | None) -> str | None:
    """The first phrase of `pattern` in `text`, negated or not (for context such as laterality)."""
    if not text or pattern is None:
        return None
    match = pattern.search(text)
    return match.group(0) if match else None
