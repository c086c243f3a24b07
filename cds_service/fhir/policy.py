"""A service's prefetch policy, declared once: per key, its FHIR query template, when the decision
needs it, and what it means when it cannot be had (like the prefetch annotations of HAPI FHIR's
CDS Hooks module). Everything else is derived from the declaration: discovery's `prefetch` and
`usageRequirements`, which keys are read at each stage, which ones are read from the FHIR server when
the client did not send them, and which failures answer 412.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class Need(StrEnum):
    """When the decision needs a key."""

    ALWAYS = "always"  # read on every call: it says whether the service applies at all
    ONCE_RELEVANT = "once relevant"  # read only once the ALWAYS keys show that it applies


class OnFailure(StrEnum):
    """What it means when a key is neither usable in the prefetch nor readable from the FHIR server."""

    REQUIRED = "required"  # the decision cannot be made: HTTP 412 Precondition Failed
    OPTIONAL = "optional"  # decide without it (the cards can still be right, or say what was not assessed)


@dataclass(frozen=True)
class FilledQuery:
    """A key's query with the prefetch tokens replaced by the request's values."""

    query: str
    when_refused: str | None  # the narrower query to send when the server refuses `query`


@dataclass(frozen=True)
class PrefetchKey:
    """One prefetch key: its template (a read or a plain search, CDS Hooks' restricted subset) and its use."""

    name: str
    query: str
    need: Need
    on_failure: OnFailure
    describes: str  # in words, for usageRequirements: "the patient's Conditions"
    # For servers that refuse `query` (HTTP 400/403/422 with an OperationOutcome): the same search
    # qualified the way such servers require, e.g. an Observation search with a category.
    when_refused: str | None = None

    @property
    def tokens(self) -> frozenset[str]:
        """The prefetch tokens the templates use, e.g. {"context.patientId"}."""
        found = _TOKEN.findall(self.query) + _TOKEN.findall(self.when_refused or "")
        return frozenset(found)

    def fill(self, context: Mapping[str, Any]) -> FilledQuery | None:
        """The query for this request, or None when a token has no usable value (e.g. no encounterId).

        Only `context.<field>` tokens are filled, and only with FHIR ids: a value that is not one is
        never put into a URL."""
        values: dict[str, str] = {}
        for token in self.tokens:
            field = token.removeprefix("context.")
            value = context.get(field) if token.startswith("context.") else None
            if not isinstance(value, str) or not _FHIR_ID.fullmatch(value):
                return None
            values[token] = value

        def replace(template: str) -> str:
            return _TOKEN.sub(lambda m: values[m.group(1)], template)

        return FilledQuery(replace(self.query), replace(self.when_refused) if self.when_refused else None)


@dataclass(frozen=True)
class PrefetchPolicy:
    """Every key a service asks for, in the order its resources are handed to the rules."""

    keys: tuple[PrefetchKey, ...]
    relevant_when: str  # in words, when ONCE_RELEVANT keys are needed: "once MS is found"

    def __post_init__(self) -> None:
        names = [k.name for k in self.keys]
        if len(names) != len(set(names)):
            raise ValueError("prefetch keys must be unique")

    def key(self, name: str) -> PrefetchKey:
        return next(k for k in self.keys if k.name == name)

    def names(self, need: Need | None = None, on_failure: OnFailure | None = None) -> tuple[str, ...]:
        return tuple(
            k.name
            for k in self.keys
            if (need is None or k.need is need) and (on_failure is None or k.on_failure is on_failure)
        )

    def templates(self) -> dict[str, str]:
        """Discovery's `prefetch`."""
        return {k.name: k.query for k in self.keys}

    def fill(self, context: Mapping[str, Any]) -> dict[str, FilledQuery]:
        """Each key's query for this request; keys whose tokens the context cannot fill are left out."""
        out: dict[str, FilledQuery] = {}
        for k in self.keys:
            filled = k.fill(context)
            if filled is not None:
                out[k.name] = filled
        return out

    def usage_requirements(self) -> str:
        """Discovery's `usageRequirements`, in words, from the declaration."""

        def listing(keys: Iterable[PrefetchKey]) -> str:
            items = [k.describes for k in keys]
            return ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1] if items else ""

        def pick(need: Need, on_failure: OnFailure) -> list[PrefetchKey]:
            return [k for k in self.keys if k.need is need and k.on_failure is on_failure]

        required_always = pick(Need.ALWAYS, OnFailure.REQUIRED)
        required_later = pick(Need.ONCE_RELEVANT, OnFailure.REQUIRED)
        optional_always = pick(Need.ALWAYS, OnFailure.OPTIONAL)
        optional_later = pick(Need.ONCE_RELEVANT, OnFailure.OPTIONAL)
        parts = []
        if required_always:
            parts.append(f"Needs {listing(required_always)}")
        if required_later:
            parts.append(f"{self.relevant_when}, also {listing(required_later)}")
        text = "; ".join(parts) + "."
        if optional_always:
            text += f" Used when available: {listing(optional_always)}."
        if optional_later:
            text += f" Used when available, {self.relevant_when}: {listing(optional_later)}."
        text += (
            " Keys not sent (or sent as null, an error OperationOutcome or a partial page) are read from "
            "fhirServer with fhirAuthorization (an optional key left out whose narrower form was sent is not: "
            "that key stands in); required data that cannot be had is answered with HTTP 412, optional data "
            "is done without."
        )
        return text
