"""Read a CDS Hooks `prefetch` object into typed FHIR resources.

A prefetch value may be a searchset Bundle, a single resource, `null`, or an OperationOutcome that
reports a failed query; the key may also be absent. We record, per key, whether its data can be
trusted as complete. `null` is treated as *unknown* (some EHRs send it for a query that failed), so
the caller can fetch it or answer 412 rather than conclude "the patient has nothing".

Values are decoded by `decode.py` under the declarations of `schema.py` (one pass, only the
elements the rules read); a value that does not fit them as a whole is read resource by resource,
each under its declaration or else by `fhir.resources` (parse.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel

from cds_service.fhir import decode
from cds_service.fhir.parse import parse_resource
from cds_service.fhir.schema import Bundle, Element, OperationOutcome, Patient, Resource, conforms

log = logging.getLogger(__name__)

_FAILED_SEVERITIES = {"error", "fatal"}
_FAILED_QUERY = "the EHR reported an error for this query"
_PAGINATED = "paginated: only the first page was sent"

# What the rules read: a typed resource (schema.py), or a `fhir.resources` model for the few the
# declarations decline. Both have the FHIR element names as attributes.
ReadResource = Resource | FHIRAbstractModel
Select = Callable[[ReadResource], bool]


@dataclass
class PrefetchData:
    """What the prefetch gave: resources by key, and why any key is unusable."""

    resources: dict[str, list[ReadResource]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> reason
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count (no PHI)
    fetch_attempted: set[str] = field(default_factory=set)  # keys already asked of the FHIR server

    def all_resources(self, order: Iterable[str] | None = None) -> list[ReadResource]:
        """Every resource read, key by key (in `order` when given), each once.

        One resource can come through two keys (an Observation with a category is in both the
        category-qualified and the unqualified search): the first copy is kept, so that no rule
        counts it twice. Resources without an id cannot be matched and are all kept."""
        keys = list(order) if order is not None else list(self.resources)
        seen: set[tuple[str, str]] = set()
        out: list[ReadResource] = []
        for key in keys:
            for resource in self.resources.get(key, ()):
                rid = getattr(resource, "id", None)
                if isinstance(rid, str):
                    identity = (resource.get_resource_type(), rid)
                    if identity in seen:
                        continue
                    seen.add(identity)
                out.append(resource)
        return out

    def add(self, other: PrefetchData) -> None:
        """Take in what another read of further keys found."""
        self.resources.update(other.resources)
        self.unavailable.update(other.unavailable)
        self.skipped.update(other.skipped)


def _reference_id(reference: Any, resource_type: str) -> str | None:
    if isinstance(reference, dict):
        reference = reference.get("reference")
    elif reference is not None:
        reference = getattr(reference, "reference", None)
    if isinstance(reference, str) and reference.startswith(resource_type + "/"):
        return reference.split("/", 2)[1]
    return None


def _belongs_to_other_patient(resource: Any, patient_id: str) -> bool:
    """True when the resource (typed, or parsed JSON) names a different patient than the one in context."""
    if isinstance(resource, dict):
        if resource.get("resourceType") == "Patient":
            return resource.get("id") not in (None, patient_id)
        elements = [resource.get("subject"), resource.get("patient")]
        return any((other := _reference_id(e, "Patient")) is not None and other != patient_id for e in elements)
    if type(resource) is Patient:
        return resource.id not in (None, patient_id)
    subject = getattr(resource, "subject", None)
    reference: str | None = subject.reference if subject is not None else None
    if reference is None or not reference.startswith("Patient/"):
        return False
    return reference.split("/", 2)[1] != patient_id


def _operation_outcome_failed(raw: dict[str, Any]) -> bool:
    issues = raw.get("issue")
    if not isinstance(issues, list):
        return True  # an OperationOutcome in place of data says the query did not succeed
    return any(isinstance(i, dict) and _text(i.get("severity")) in _FAILED_SEVERITIES for i in issues)


def _text(value: Any) -> str | None:
    """`value` when it is a string, else None: a list or object read from JSON is not hashable."""
    return value if isinstance(value, str) else None


def _typed_outcome_failed(outcome: OperationOutcome) -> bool:
    return outcome.issue is None or any(i.severity in _FAILED_SEVERITIES for i in outcome.issue)


_SEVERITIES = ("fatal", "error", "warning", "information")


def _outcome_severity(raw: dict[str, Any]) -> str:
    """The worst severity of an OperationOutcome's issues, from FHIR's fixed list (safe to log)."""
    issues = raw.get("issue")
    severities = (
        {_text(i.get("severity")) for i in issues if isinstance(i, dict)} if isinstance(issues, list) else set()
    )
    return next((s for s in _SEVERITIES if s in severities), "unknown")


def _typed_outcome_severity(outcome: OperationOutcome) -> str:
    severities = {i.severity for i in outcome.issue or ()}
    return next((s for s in _SEVERITIES if s in severities), "unknown")


Entry = tuple[int | None, Any]  # (position in Bundle.entry, or None for a single resource; the resource)


def _typed_entries(value: Resource, outcomes: Counter[str]) -> tuple[list[Entry], str | None]:
    """The resources a typed prefetch value carries, or a reason it cannot be used. OperationOutcome
    entries (Epic's `search.mode: outcome`) are not data: counted by severity in `outcomes`, or, an
    error or fatal one, the reason the value cannot be trusted as complete."""
    if isinstance(value, OperationOutcome):
        return [], _FAILED_QUERY if _typed_outcome_failed(value) else None
    if not isinstance(value, Bundle):
        return [(None, value)], None
    if any(link.relation == "next" for link in value.link or ()):
        return [], _PAGINATED
    found: list[Entry] = []
    for position, entry in enumerate(value.entry or ()):
        resource = entry.resource
        if isinstance(resource, OperationOutcome):
            if _typed_outcome_failed(resource):
                return [], _FAILED_QUERY
            outcomes[_typed_outcome_severity(resource)] += 1
            continue
        if resource is not None:
            found.append((position, resource))
    return found, None


def _raw_entries(value: dict[str, Any], outcomes: Counter[str]) -> tuple[list[Entry], str | None]:
    """The raw resources a parsed prefetch value carries, or a reason it cannot be used (as
    `_typed_entries`)."""
    resource_type = value.get("resourceType")
    if resource_type == "OperationOutcome":
        return [], _FAILED_QUERY if _operation_outcome_failed(value) else None
    if resource_type != "Bundle":
        return [(None, value)], None
    links = value.get("link")
    if isinstance(links, list) and any(isinstance(link, dict) and link.get("relation") == "next" for link in links):
        return [], _PAGINATED
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        return [], "Bundle.entry is not a list"
    found: list[Entry] = []
    for position, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            if _operation_outcome_failed(resource):
                return [], _FAILED_QUERY
            outcomes[_outcome_severity(resource)] += 1
            continue
        if resource is not None:
            found.append((position, resource))
    return found, None


class _Parsed:
    """The parsed JSON of a prefetch value's resources, decoded on first need (for fhir.resources to
    read a resource that does not conform)."""

    def __init__(self, value: Any):
        self._value = value
        self._parsed: Any = None

    def resource(self, position: int | None) -> Any:
        if self._parsed is None:
            self._parsed = decode.builtin_value(self._value)
        parsed = self._parsed
        return parsed if position is None else parsed["entry"][position]["resource"]


def _unusable(prefetch: Mapping[str, Any], key: str) -> str | None:
    if key not in prefetch:
        return "not sent"
    value = prefetch[key]
    if decode.is_raw(value):
        kind = decode.raw_kind(value)
        if kind == "n":
            return "sent as null"
        return None if kind == "{" else "not a FHIR resource"
    if value is None:
        return "sent as null"
    if not isinstance(value, dict):
        return "not a FHIR resource"
    return None


def _entries(value: Any, outcomes: Counter[str] | None = None) -> tuple[list[Any], str | None]:
    """The resources of one usable prefetch value: typed when it fits the declarations as a whole,
    else parsed JSON (read one by one later)."""
    outcomes = outcomes if outcomes is not None else Counter()
    typed = decode.typed_value(value)
    if typed is not None:
        return _typed_entries(typed, outcomes)
    try:
        return _raw_entries(decode.builtin_value(value), outcomes)
    except decode.UnreadableJson:
        return [], "not readable JSON (a number out of range)"


def unusable_keys(prefetch: Mapping[str, Any] | None, keys: Iterable[str]) -> dict[str, str]:
    """Why each of `keys` cannot be used: absent, null, not a resource, an error OperationOutcome,
    paginated. (read_prefetch finds the same reasons.)"""
    prefetch = prefetch or {}
    out: dict[str, str] = {}
    for key in keys:
        reason = _unusable(prefetch, key) or _entries(prefetch[key])[1]
        if reason is not None:
            out[key] = reason
    return out


def read_prefetch(
    prefetch: Mapping[str, Any] | None,
    keys: Iterable[str],
    patient_id: str,
    wanted_types: frozenset[str],
    select: Select | None = None,
) -> PrefetchData:
    """Read the resources of `keys` in `prefetch`; keep only `wanted_types` of this patient.

    `select`, when given, sees each decoded resource and says whether to keep it (the clinical
    relevance filter: a long record's vital signs go no further, not even to the conformance check)."""
    prefetch = prefetch or {}
    out = PrefetchData()
    outcomes: Counter[str] = Counter()
    conforming: set[Element] = set()  # the elements found conforming so far, this call only
    for key in keys:
        problem = _unusable(prefetch, key)
        if problem is not None:
            out.unavailable[key] = problem
            continue
        value = prefetch[key]
        entries, problem = _entries(value, outcomes)
        if problem:
            out.unavailable[key] = problem
            continue
        read: list[ReadResource] = []
        parsed = _Parsed(value)
        for position, entry in entries:
            try:
                resource = _read_one(parsed, position, entry, patient_id, wanted_types, select, out.skipped, conforming)
            except Exception as exc:  # noqa: BLE001 - one unreadable resource must not cost the whole call
                # The readers are total over JSON (tests/fhir/test_reader_properties.py); if one is not,
                # the resource is skipped like any unreadable one, and the log says which error it was.
                log.error(
                    "prefetch: reading a resource failed", extra={"event": "prefetch", "error_type": type(exc).__name__}
                )
                out.skipped[f"reader error {type(exc).__name__}"] += 1
                continue
            if resource is not None:
                read.append(resource)
        out.resources[key] = read
    if out.skipped:
        # Counts and reasons only: never resource content or identifiers.
        log.warning("prefetch: skipped or repaired data", extra={"event": "prefetch", "reasons": dict(out.skipped)})
    if outcomes:
        # Severities and counts only: an outcome's text may quote the query (and so the patient id).
        log.info(
            "prefetch: OperationOutcome entries skipped",
            extra={"event": "outcome_entries_skipped", "count": sum(outcomes.values()), "reasons": dict(outcomes)},
        )
    return out


def _read_one(
    parsed: _Parsed,
    position: int | None,
    entry: Any,
    patient_id: str,
    wanted_types: frozenset[str],
    select: Select | None,
    skipped: Counter[str],
    conforming: set[Element],
) -> ReadResource | None:
    """One entry (typed, or parsed JSON) as a resource of a wanted type and of this patient that
    `select` keeps, or None. Typed when it decodes and conforms (`conforming`: the elements of this
    read already found conforming), else read by fhir.resources."""
    raw = entry if isinstance(entry, dict) else None
    typed = entry if isinstance(entry, Resource) else decode.decoded_resource(raw) if raw is not None else None
    if typed is not None:
        if typed.get_resource_type() not in wanted_types:
            return None
        if _belongs_to_other_patient(typed, patient_id):
            skipped["resource of another patient"] += 1
            return None
        if select is not None and not select(typed):
            return None
        if conforms(typed, conforming):
            return typed
        if raw is None:
            try:
                raw = parsed.resource(position)
            except decode.UnreadableJson:
                skipped["unreadable JSON"] += 1
                return None
    elif raw is None or not isinstance(raw.get("resourceType"), str) or raw["resourceType"] not in wanted_types:
        return None
    elif _belongs_to_other_patient(raw, patient_id):
        skipped["resource of another patient"] += 1
        return None
    outcome = parse_resource(raw)
    if outcome.resource is None:
        skipped[outcome.reason or "unreadable"] += 1
        return None
    if outcome.dropped:
        skipped["elements dropped while reading"] += len(outcome.dropped)
    return outcome.resource
