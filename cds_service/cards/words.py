"""Evidence in a clinician's words: what was found, where it was recorded, and a labelled date.

"Low back pain (problem list, since 20 Oct 2026)": never a FHIR id, a raw code or a code system's
name. The clinical layer describes a match for engineers and logs ("SNOMED CT 279039007 Low back
pain", `text "…"`, "order reason: …"); here only the chart's words are kept.
"""

from __future__ import annotations

import datetime as dt
import re

from cds_service.clinical.facts import Evidence
from cds_service.clinical.valuesets import SYSTEM_NAMES

MAX_WHAT = 70  # characters of chart text quoted on a card

_SYSTEM_LABELS = sorted({*SYSTEM_NAMES.values(), "ICD-10", "no system"}, key=len, reverse=True)
# "<system name or URI> <code> " before a display, as clinical.reading.describe_code writes it.
_CODED = re.compile(
    r"(?:(?<=^)|(?<=[\s(;:]))(?:" + "|".join(re.escape(s) for s in _SYSTEM_LABELS) + r"|[a-z][a-z0-9+.-]*:[^\s;)]+)"
    r" [^\s;)]+(?: |(?=[;)])|$)"
)
_QUOTED = re.compile(r'"([^"]*)"')
_LEAD_INS = ("order reason: ", "visit reason: ", "text ")  # "where" says these already
_MARKDOWN = "\\`*_[]<>#|"
_AFTER_OPEN = re.compile(r"\(\s*[;,\s]*")
_BEFORE_CLOSE = re.compile(r"[;,\s]*\)")
_REPEATED_SEMICOLONS = re.compile(r"\s*;(?:\s*;)+")
_READABLE = re.compile(r"[A-Za-z]{2}")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def md(text: str) -> str:
    """Chart text shown inside markdown: on one line, with markdown syntax neutralised."""
    flat = " ".join(text.split())
    for char in _MARKDOWN:
        flat = flat.replace(char, "\\" + char)
    return flat


def short_date(value: dt.date) -> str:
    """20 Oct 2026: unambiguous in every locale, unlike 10/20/2026."""
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def _without_codes(part: str) -> str:
    return " ".join(_CODED.sub("", part).split())


def chart_words(matched: str, fallback: str) -> str:
    """What was found, in the chart's words: the codes' displays and the quoted text, without system
    names or codes; `fallback` (the concept's label) when nothing readable is left."""
    text = matched
    for lead_in in _LEAD_INS:
        if text.startswith(lead_in):
            text = text[len(lead_in) :]
    pieces: list[str] = []
    last = 0
    for quoted in _QUOTED.finditer(text):  # chart text is kept as written, codes are dropped around it
        pieces.append(_without_codes(text[last : quoted.start()]))
        pieces.append(" ".join(quoted.group(1).split()))
        last = quoted.end()
    pieces.append(_without_codes(text[last:]))
    words = " ".join(p for p in pieces if p)
    if "(" in words or ";" in words:  # separators and brackets left behind by codes without displays
        words = _AFTER_OPEN.sub("(", words)
        words = _BEFORE_CLOSE.sub(")", words)
        words = _REPEATED_SEMICOLONS.sub(";", words).replace("()", "")
    words = " ".join(words.split()).strip(" :;,")
    if not _READABLE.search(words):
        words = fallback
    return clip(words[:1].upper() + words[1:])


def clip(text: str) -> str:
    """Chart text on one line, at most MAX_WHAT characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_WHAT else flat[: MAX_WHAT - 1].rstrip(" ,;:") + "…"


def where_and_when(evidence: Evidence, no_date: str) -> str:
    """ "problem list, since 20 Oct 2026"; "order reason, ordered 25 Nov 2026"; "problem list, date not recorded"."""
    when = (
        no_date if evidence.date is None else " ".join(p for p in (evidence.date_label, short_date(evidence.date)) if p)
    )
    return ", ".join(p for p in (evidence.where, when) if p)


def evidence_words(evidence: Evidence, fallback: str, no_date: str, what: str | None = None) -> str:
    """ "Low back pain (problem list, since 20 Oct 2026)", markdown-safe (`what`: chart_words, if known)."""
    what = chart_words(evidence.matched, fallback) if what is None else what
    return f"{md(what)} ({md(where_and_when(evidence, no_date))})"


# "ICD-10" also names national editions (clinical.valuesets.system_name): its URI is not known from the name.
_SYSTEM_URIS = {name: uri for uri, name in SYSTEM_NAMES.items() if name != "ICD-10"}
_CODING = re.compile(
    r"(?:^|(?<=[\s(;:]))(?P<system>"
    + "|".join(re.escape(s) for s in sorted(_SYSTEM_URIS, key=len, reverse=True))
    + r"|[a-z][a-z0-9+.-]*:[^\s;)]+) (?P<code>[^\s;)]+)(?: (?P<display>[^;)\"]+))?"
)


def codings_in(matched: str) -> list[dict[str, str]]:
    """The codings a match description names (system URI, code, display), for a FHIR reasonCode;
    systems known only by a generic name (e.g. a national ICD-10 edition) are left out."""
    out: list[dict[str, str]] = []
    for found in _CODING.finditer(matched.split('"', 1)[0]):
        system = _SYSTEM_URIS.get(found["system"], found["system"])
        coding = {"system": system, "code": found["code"]}
        if found["display"] and found["display"].strip():
            coding["display"] = found["display"].strip()
        out.append(coding)
    return out
