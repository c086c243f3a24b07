"""Hypothesis strategies for mutational fuzzing of CDS Hooks requests, seeded from real-shaped data.

A seed is a request the service reads correctly (a fixture, or a Synthea record turned into a
patient-view call). A mutation picks any path in it and replaces the value there with arbitrary
JSON or a known-nasty value (wrong types, control characters, odd ids, huge strings, values nested
~1000 levels deep), deletes it, wraps it, or adds an element. Bodies are serialised with `to_body`,
which writes the deep values as raw JSON text (no recursion, so any depth can be sent).

Every generated string that could end up in an error answer carries `CANARY`: an error body that
contains it echoes client input (it may hold PHI).
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.conftest import FIXTURES, ROOT, SHARED

ORDER_FIXTURES = ROOT / "fixtures" / "order-entry"
SYNTHEA = SHARED / "data" / "synthea-r4"
CANARY = "Jane-Canary-Doe"
SERVICE_OF_HOOK = {
    "patient-view": "ms-back-pain-patient-view",
    "order-select": "ms-back-pain-order-select",
    "order-sign": "ms-back-pain-order-sign",
}


def fuzz_examples(default: int) -> int:
    """Examples per fuzz test: `default` in the fast run; CDS_FUZZ_EXAMPLES=20000 for a long run."""
    return int(os.environ.get("CDS_FUZZ_EXAMPLES", default))


# --- seeds -------------------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def fixture_requests(folder: Path) -> list[dict[str, Any]]:
    return [_load(p) for p in sorted(folder.glob("*.json")) if p.name != "expected.json"]


def _search_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"urn:uuid:{r.get('id')}", "resource": r} for r in resources],
    }


def synthea_request(path: Path, red_flag_chart: dict[str, Any], max_per_key: int = 25) -> dict[str, Any]:
    """A patient-view call for one Synthea record, its resources split into the prefetch keys (a
    few of each, to keep one call cheap), plus the MS, back pain and red flag of an urgent
    fixture, so that every rule runs on the real-shaped rest of the record."""
    record = _load(path)
    resources = [e["resource"] for e in record["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    conditions = [e["resource"] for e in red_flag_chart["prefetch"]["conditions"]["entry"]]
    for condition in conditions:
        condition["subject"] = {"reference": f"Patient/{patient['id']}"}
    keys = {
        "conditions": by_type.get("Condition", [])[:max_per_key] + conditions,
        "observations": by_type.get("Observation", [])[:max_per_key],
        "imagingStudies": by_type.get("ImagingStudy", [])[:max_per_key],
        "medications": by_type.get("MedicationRequest", [])[:max_per_key],
        "medicationStatements": by_type.get("MedicationStatement", [])[:max_per_key],
    }
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, path.name)),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/example", "patientId": patient["id"]},
        "prefetch": {"patient": patient, **{k: _search_bundle(v) for k, v in keys.items()}},
    }


def hook_seeds() -> list[dict[str, Any]]:
    """Every fixture request of the three hooks, and three Synthea records with an urgent MS chart."""
    seeds = fixture_requests(FIXTURES) + fixture_requests(ORDER_FIXTURES)
    urgent = _load(FIXTURES / "urgent-new-paraparesis.json")
    smallest = sorted(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size)[:3]
    seeds += [synthea_request(p, copy.deepcopy(urgent)) for p in smallest]
    return seeds


def resource_seeds() -> list[dict[str, Any]]:
    """Every resource of the hook seeds' prefetch and draft orders (each a JSON object)."""
    out: list[dict[str, Any]] = []
    for request in hook_seeds():
        bundles = list((request.get("prefetch") or {}).values()) + [request["context"].get("draftOrders")]
        for value in bundles:
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                out += [e["resource"] for e in value.get("entry", []) if isinstance(e.get("resource"), dict)]
            elif isinstance(value, dict):
                out.append(value)
    return out


def feedback_seeds() -> list[dict[str, Any]]:
    card = "4e0a3a1e-3283-4575-ab82-028d55fe2719"
    return [
        {
            "feedback": [
                {
                    "card": card,
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                    "outcomeTimestamp": "2026-11-25T12:05:31Z",
                }
            ]
        },
        {
            "feedback": [
                {
                    "card": card,
                    "outcome": "overridden",
                    "overrideReason": {
                        "reason": {
                            "system": "https://example.org/cds-override-reasons",
                            "code": "already-evaluated",
                            "display": "Already evaluated",
                        },
                        "userComment": "Seen by neurology last week",
                    },
                    "outcomeTimestamp": "2026-11-25T12:05:31+01:00",
                }
            ]
        },
    ]


# --- values ------------------------------------------------------------------------------------------


class Deep:
    """A value nested `levels` deep (lists or objects), written as raw JSON text by `to_body`."""

    def __init__(self, levels: int, kind: str, leaf: str):
        self.levels, self.kind, self.leaf = levels, kind, leaf

    def value(self, max_levels: int = 200) -> Any:
        """As Python values, at most `max_levels` deep (deeper ones stay in JSON text: Python's own
        copy and repr recurse)."""
        node: Any = json.loads(self.leaf)
        for _ in range(min(self.levels, max_levels)):
            node = [node] if self.kind == "list" else {"coding" if self.kind == "coding" else "a": node}
        return node

    def text(self) -> str:
        if self.kind == "list":
            return "[" * self.levels + self.leaf + "]" * self.levels
        if self.kind == "coding":  # a code whose value nests (the shape that once crashed the reader)
            return '{"coding":' * self.levels + self.leaf + "}" * self.levels
        return '{"a":' * self.levels + self.leaf + "}" * self.levels


FHIR_NAMES = [
    "resourceType", "id", "code", "coding", "system", "display", "text", "subject", "reference", "status",
    "clinicalStatus", "verificationStatus", "category", "onsetDateTime", "onsetPeriod", "recordedDate", "note",
    "valueCodeableConcept", "valueString", "valueQuantity", "component", "effectiveDateTime", "effectivePeriod",
    "issued", "bodySite", "series", "modality", "started", "procedureCode", "medicationCodeableConcept",
    "medicationReference", "dosageInstruction", "authoredOn", "intent", "reasonCode", "reasonReference",
    "contained", "extension", "entry", "resource", "link", "relation", "issue", "severity", "selections",
    "draftOrders", "patientId", "userId", "hook", "hookInstance", "context", "prefetch", "fhirServer",
    "fhirAuthorization", "feedback", "card", "outcome", "acceptedSuggestions", "overrideReason", "userComment",
    "outcomeTimestamp", "start", "end", "patientInstruction", "asNeededBoolean", "sequence",
]  # fmt: skip
CONTROL = "".join(chr(c) for c in range(0x20)) + "\x7f\x85\u2028\u2029\ufeff\u202e"
NASTY: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63 - 1, -(2**63), 1.5, -0.0, 1e308, 1e-300,
    "", " ", "\x00", f"{CANARY}\x00", f"a\x00{CANARY}", "\x1b[31m", "\r\n", "\t", "\u202e\u200b", "💥", "\ud800",
    "draft_1", f"urn:uuid:{uuid.UUID(int=7)}", "ServiceRequest/None", "ServiceRequest/draft_1", "Patient/",
    "Patient/../../etc", "Condition", "Bundle", "OperationOutcome", "ServiceRequest", "MedicationRequest",
    "2026-02-30", "0000-01-01", "2026-11-25T25:61:00Z", "9999-12-31T23:59:59+14:00", "2026", "2026-13",
    "24700007", "G35", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org",
    f"{CANARY} " + "x" * 100_000, CANARY * 4000, [], {}, [[]], [{}], {"": {}}, [None], {"coding": {}},
    {"coding": [{"system": ["x"], "code": {}}]}, {"text": {}}, ["Condition"], {"resourceType": "Condition"},
    {"reference": f"Patient/{CANARY}"}, {"resourceType": "OperationOutcome", "issue": [{"severity": "fatal"}]},
    Deep(1000, "dict", "1"), Deep(990, "coding", '"24700007"'), Deep(1000, "list", '"x"'), Deep(70, "dict", "{}"),
]  # fmt: skip

_text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(CONTROL), max_size=30)
_strings = _text | st.sampled_from([s for s in NASTY if isinstance(s, str)]) | _text.map(lambda s: CANARY + s)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _strings
)
_keys = st.sampled_from(FHIR_NAMES) | _text
json_values = st.recursive(
    _leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4), max_leaves=12
)
values = st.one_of(st.sampled_from(NASTY), json_values)


CODES = [
    "24700007", "G35", "G35.D", "279039007", "161891005", "1845001", "22253000", "M54.5", "M54.50", "R29.2",
    "24937-5", "24981-3", "5640", "7804", "active", "confirmed", "final", "draft", "order", "MR", "lumbar",
]  # fmt: skip


def _same_type(current: Any) -> st.SearchStrategy[Any]:
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int | float):
        return st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(current, str):
        return _strings | st.sampled_from(CODES)
    if isinstance(current, list):
        return st.lists(json_values, max_size=3) | st.just([])
    if isinstance(current, dict):
        return st.dictionaries(_keys, json_values, max_size=4)
    return values


# --- mutations ---------------------------------------------------------------------------------------

Path_ = tuple[Any, ...]


def paths(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every path to a value inside `node` (not the root), depth-first, without recursion."""
    stack: list[tuple[Any, Path_]] = [(node, prefix)]
    while stack:
        value, here = stack.pop()
        if here:
            yield here
        if isinstance(value, dict):
            stack.extend((v, (*here, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*here, i)) for i, v in enumerate(value))


def _parent(root: Any, path: Path_) -> Any:
    node = root
    for part in path[:-1]:
        node = node[part]
    return node


def mutate(root: dict[str, Any], path: Path_, operation: str, value: Any) -> None:
    parent, last = _parent(root, path), path[-1]
    if operation == "replace":
        parent[last] = value
    elif operation == "delete":
        del parent[last]
    elif operation == "wrap":
        parent[last] = [parent[last]] if isinstance(value, list) else {"value": parent[last]}
    elif operation == "add" and isinstance(parent[last], dict):
        parent[last][value if isinstance(value, str) else "extra"] = value
    elif operation == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    elif operation == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    else:
        parent[last] = value


@st.composite
def mutated(
    draw: st.DrawFn, seeds: list[dict[str, Any]], max_mutations: int = 4, request: bool = True
) -> dict[str, Any]:
    """One seed with 1..max_mutations mutations: in a quarter of the bodies aimed anywhere (the
    envelope: hook, hookInstance, context fields), else only at the data (prefetch resources, draft
    orders), where most bodies must still be answered with cards."""
    body = copy.deepcopy(draw(st.sampled_from(seeds)))
    envelope_too = draw(st.integers(0, 3)) == 0
    for _ in range(draw(st.integers(1, max_mutations))):
        everywhere = list(paths(body))
        if not everywhere:
            break
        if not request:  # a resource: anywhere in it
            path = draw(st.sampled_from(everywhere))
            operation = draw(st.sampled_from(["replace", "same_type", "delete", "wrap", "add", "duplicate"]))
            value = draw(_same_type(_parent(body, path)[path[-1]])) if operation == "same_type" else draw(values)
            mutate(body, path, "replace" if operation == "same_type" else operation, copy.deepcopy(value))
            continue
        data = [p for p in everywhere if p[0] == "prefetch" or p[:2] == ("context", "draftOrders")]
        envelope = [p for p in everywhere if len(p) <= 3 and p not in data]
        pool = envelope if not data or (envelope_too and envelope and draw(st.booleans())) else data
        path = draw(st.sampled_from(pool))
        operation = draw(
            st.sampled_from(["replace", "replace", "same_type", "same_type", "delete", "wrap", "add", "duplicate"])
        )
        if operation == "same_type":  # a value of the same JSON type: the resource often stays readable
            value = draw(_same_type(_parent(body, path)[path[-1]]))
            operation = "replace"
        else:
            value = copy.deepcopy(draw(values))  # NASTY's lists stay empty
        mutate(body, path, operation, value)  # NASTY's lists stay empty
    return body


def as_python(value: Any) -> Any:
    """`value` with every `Deep` made Python values (without recursion)."""
    root = [value]
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in list(items):
            if isinstance(item, Deep):
                node[key] = item.value()
            elif isinstance(item, dict | list):
                stack.append(item)
    return root[0]


def to_body(value: Any) -> bytes:
    """JSON bytes of `value`, `Deep` values written as raw text (any depth, no recursion). Strings
    with lone surrogates are written as JSON escapes, as a client might send them."""
    deep: dict[str, str] = {}

    def placeholder(item: Any) -> Any:
        if isinstance(item, Deep):
            key = f"__deep_{len(deep)}__"
            deep[key] = item.text()
            return key
        raise TypeError(type(item).__name__)

    text = json.dumps(value, default=placeholder)
    for key, raw in deep.items():
        text = text.replace(f'"{key}"', raw, 1)
    return text.encode("utf-8")
