"""Read a CDS Hooks `prefetch` object into validated FHIR resources.

A prefetch value may be a searchset Bundle, a single resource, `null`, or an OperationOutcome that
reports a failed query; the key may also be absent. We record, per key, whether its data can be
trusted as complete. `null` is treated as *unknown* (some EHRs send it for a query that failed), so
the caller can fetch it or answer 412 rather than conclude "the patient has nothing".
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel

from cds_service.fhir.fast import Resource, read_plain
from cds_service.fhir.parse import parse_resource
from cds_service.gcpause import gc_paused

log = logging.getLogger(__name__)

_FAILED_SEVERITIES = {"error", "fatal"}


@dataclass
class PrefetchData:
    """What the prefetch gave: resources by key, and why any key is unusable."""

    resources: dict[str, list[FHIRAbstractModel | Resource]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> reason
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count (no PHI)
    fetch_attempted: set[str] = field(default_factory=set)  # keys already asked of the FHIR server

    def all_resources(self, order: Iterable[str] | None = None) -> list[FHIRAbstractModel | Resource]:
        """Every resource read, key by key (in `order` when given), each once.

        One resource can come through two keys (an Observation with a category is in both the
        category-qualified and the unqualified search): the first copy is kept, so that no rule
        counts it twice. Resources without an id cannot be matched and are all kept."""
        keys = list(order) if order is not None else list(self.resources)
        seen: set[tuple[str, str]] = set()
        out: list[FHIRAbstractModel | Resource] = []
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
        ref = reference.get("reference")
        if isinstance(ref, str) and ref.startswith(resource_type + "/"):
            return ref.split("/", 2)[1]
    return None


def _belongs_to_other_patient(raw: dict[str, Any], patient_id: str) -> bool:
    """True when the resource names a different patient than the one in context."""
    if raw.get("resourceType") == "Patient":
        return raw.get("id") not in (None, patient_id)
    for element in ("subject", "patient"):
        other = _reference_id(raw.get(element), "Patient")
        if other is not None and other != patient_id:
            return True
    return False


def _operation_outcome_failed(raw: dict[str, Any]) -> bool:
    issues = raw.get("issue")
    if not isinstance(issues, list):
        return True  # an OperationOutcome in place of data says the query did not succeed
    return any(isinstance(i, dict) and _text(i.get("severity")) in _FAILED_SEVERITIES for i in issues)


def _text(value: Any) -> str | None:
    """`value` when it is a string, else None: a list or object read from JSON is not hashable."""
    return value if isinstance(value, str) else None


def _outcome_severity(raw: dict[str, Any]) -> str:
    """The worst severity of an OperationOutcome's issues, from FHIR's fixed list (safe to log)."""
    issues = raw.get("issue")
    severities = (
        {_text(i.get("severity")) for i in issues if isinstance(i, dict)} if isinstance(issues, list) else set()
    )
    return next((s for s in ("fatal", "error", "warning", "information") if s in severities), "unknown")


def _raw_entries(value: dict[str, Any], outcomes: Counter[str] | None = None) -> tuple[list[Any], str | None]:
    """The raw resources a prefetch value carries, or a reason it cannot be used.

    OperationOutcome entries of a searchset (`search.mode: outcome`, as Epic adds them) are not
    data: warnings and information are skipped (counted by severity in `outcomes`); an error or fatal
    one says the search did not (fully) succeed, so the value cannot be trusted as complete."""
    resource_type = value.get("resourceType")
    if resource_type == "OperationOutcome":
        return [], "the EHR reported an error for this query" if _operation_outcome_failed(value) else None
    if resource_type != "Bundle":
        return [value], None
    links = value.get("link")
    if isinstance(links, list) and any(isinstance(link, dict) and link.get("relation") == "next" for link in links):
        return [], "paginated: only the first page was sent"
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        return [], "Bundle.entry is not a list"
    found: list[Any] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            if _operation_outcome_failed(resource):
                return [], "the EHR reported an error for this query"
            if outcomes is not None:
                outcomes[_outcome_severity(resource)] += 1
            continue
        if resource is not None:
            found.append(resource)
    return found, None


def _read_one(
    raw: dict[str, Any],
    select: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
    skipped: Counter[str],
) -> FHIRAbstractModel | Resource | None:
    """One raw resource read, or None (not relevant, or unreadable: counted in `skipped`)."""
    if select is not None:
        selected = select(raw)
        if selected is None:
            return None
        raw = selected
    plain = read_plain(raw)  # the common clean shape, without model validation
    if plain is not None:
        return plain
    outcome = parse_resource(raw)
    if outcome.resource is None:
        skipped[outcome.reason or "unreadable"] += 1
        return None
    if outcome.dropped:
        skipped["elements dropped while reading"] += len(outcome.dropped)
    return outcome.resource


def unusable_keys(prefetch: Mapping[str, Any] | None, keys: Iterable[str]) -> dict[str, str]:
    """Why each of `keys` cannot be used, without reading its resources: absent, null, not a
    resource, an error OperationOutcome, paginated. (read_prefetch finds the same reasons.)"""
    prefetch = prefetch or {}
    out: dict[str, str] = {}
    for key in keys:
        reason = _unusable(prefetch, key) or _raw_entries(prefetch[key])[1]
        if reason is not None:
            out[key] = reason
    return out


def _unusable(prefetch: Mapping[str, Any], key: str) -> str | None:
    if key not in prefetch:
        return "not sent"
    value = prefetch[key]
    if value is None:
        return "sent as null"
    if not isinstance(value, dict):
        return "not a FHIR resource"
    return None


def read_prefetch(
    prefetch: Mapping[str, Any] | None,
    keys: Iterable[str],
    patient_id: str,
    wanted_types: frozenset[str],
    select: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> PrefetchData:
    """Validate the resources of `keys` in `prefetch`; keep only `wanted_types` of this patient.

    `select`, when given, sees each raw resource first and returns what to validate, or None to
    skip it unvalidated (the clinical relevance filter: a long record's vital signs cost little)."""
    with gc_paused():
        return _read(prefetch or {}, keys, patient_id, wanted_types, select)


def _read(
    prefetch: Mapping[str, Any],
    keys: Iterable[str],
    patient_id: str,
    wanted_types: frozenset[str],
    select: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
) -> PrefetchData:
    out = PrefetchData()
    outcomes: Counter[str] = Counter()
    for key in keys:
        problem = _unusable(prefetch, key)
        if problem is not None:
            out.unavailable[key] = problem
            continue
        raws, problem = _raw_entries(prefetch[key], outcomes)
        if problem:
            out.unavailable[key] = problem
            continue
        parsed: list[FHIRAbstractModel | Resource] = []
        for raw in raws:
            if not isinstance(raw, dict) or _text(raw.get("resourceType")) not in wanted_types:
                continue
            if _belongs_to_other_patient(raw, patient_id):
                out.skipped["resource of another patient"] += 1
                continue
            try:
                resource = _read_one(raw, select, out.skipped)
            except Exception as exc:  # noqa: BLE001 - one unreadable resource must not cost the whole call
                # The readers are total over JSON (tests/fhir/test_reader_properties.py); if one is not,
                # the resource is skipped like any unreadable one, and the log says which error it was.
                log.error(
                    "prefetch: reading a resource failed", extra={"event": "prefetch", "error_type": type(exc).__name__}
                )
                out.skipped[f"reader error {type(exc).__name__}"] += 1
                continue
            if resource is not None:
                parsed.append(resource)
        out.resources[key] = parsed
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
