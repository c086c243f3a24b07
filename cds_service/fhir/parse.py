"""Tolerant reading of one raw FHIR R4 resource into a `fhir.resources` (R4B) model.

EHRs send resources that are not quite valid: codes written as JSON numbers, vendor elements the
R4 schema does not know, a malformed date. Dropping the whole resource for that would hide a
diagnosis, so we repair what is safe to repair and drop only the unreadable *element*:

* numbers where FHIR wants a string (codes, ids) are turned into their exact string form;
* an element the R4 schema does not know is removed, and so is an invalid element that the rules
  do not depend on; then the resource is validated again.

Elements that change the meaning of a resource (its status, verification status, code, value) are
never dropped: a resource whose status cannot be read is skipped as a whole, because treating an
unreadable "refuted" as absent would count refuted data.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from cds_service.jsonlimits import nested_deeper_than

log = logging.getLogger(__name__)

# Top-level elements whose loss would change what a resource says: never dropped, the resource is skipped.
ESSENTIAL_ELEMENTS: dict[str, frozenset[str]] = {
    "Condition": frozenset({"code", "clinicalStatus", "verificationStatus"}),
    "Observation": frozenset({"status", "code"}),
    "ImagingStudy": frozenset({"status"}),
    "MedicationRequest": frozenset({"status", "medicationCodeableConcept", "medicationReference"}),
    "MedicationStatement": frozenset({"status", "medicationCodeableConcept", "medicationReference"}),
    "Medication": frozenset({"code"}),
    "DiagnosticReport": frozenset({"status", "code", "category"}),
    "Procedure": frozenset({"status", "code"}),
    "Encounter": frozenset({"status"}),
}
_MAX_REPAIR_ROUNDS = 5


@dataclass
class ParseOutcome:
    """The model (or None when skipped) and which element paths were dropped to read it."""

    resource: FHIRAbstractModel | None
    dropped: list[str] = field(default_factory=list)
    reason: str | None = None


def stringify_numbers(node: Any, key: str | None = None) -> Any:
    """Codes and ids are strings in FHIR; some systems write them as JSON numbers (exact in Python)."""
    if isinstance(node, dict):
        return {k: stringify_numbers(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [stringify_numbers(v, key) for v in node]
    if key in ("code", "id", "version", "system") and isinstance(node, int) and not isinstance(node, bool):
        return str(node)
    return node


def _remove_path(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Remove the element at `loc` (pydantic error location); True when something was removed."""
    parent: Any = data
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return False
    last = loc[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        parent[last] = None  # keep indexes of later errors valid; None entries are removed below
        return True
    return False


def _drop_none_in_lists(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_none_in_lists(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_drop_none_in_lists(v) for v in node if v is not None]
    return node


def parse_resource(raw: Any) -> ParseOutcome:
    """Validate one raw resource (a JSON object) into its R4B model, repairing what is safe."""
    if not isinstance(raw, dict):
        return ParseOutcome(None, reason="not a JSON object")
    resource_type = raw.get("resourceType")
    if not isinstance(resource_type, str):
        return ParseOutcome(None, reason="no resourceType")
    try:
        model_class = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return ParseOutcome(None, reason="unknown resourceType")  # the name is not logged: it is client input
    if nested_deeper_than(raw):
        return ParseOutcome(None, reason="nested too deeply")
    essential = ESSENTIAL_ELEMENTS.get(resource_type, frozenset())
    try:  # the usual case: a valid resource, validated once, with no copy
        return ParseOutcome(model_class.model_validate(raw))
    except (ValidationError, ValueError, TypeError, RecursionError):
        pass

    data = stringify_numbers(raw)
    dropped: list[str] = []
    copied = False
    for _ in range(_MAX_REPAIR_ROUNDS):
        try:
            return ParseOutcome(model_class.model_validate(data), dropped)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False, include_context=False)
        except (ValueError, TypeError, RecursionError) as exc:  # fhir_core raises plain errors for some shapes
            return ParseOutcome(None, dropped, reason=f"invalid {resource_type}: {type(exc).__name__}")
        if not copied:
            data, copied = copy.deepcopy(data), True
        removed_any = False
        for error in errors:
            loc = tuple(error.get("loc", ()))
            unknown_element = error.get("type") == "extra_forbidden"  # carries nothing we read
            if not loc or loc[0] == "resourceType" or (loc[0] in essential and not unknown_element):
                path = ".".join(str(p) for p in loc) or "(root)"
                return ParseOutcome(None, dropped, reason=f"invalid essential element {resource_type}.{path}")
            if _remove_path(data, loc):
                dropped.append(".".join(str(p) for p in loc))
                removed_any = True
        if not removed_any:
            break
        data = _drop_none_in_lists(data)
    return ParseOutcome(None, dropped, reason=f"invalid {resource_type} after repair")
