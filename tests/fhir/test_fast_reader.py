"""The fast reader (cds_service/fhir/fast.py) against `fhir.resources`, the reference.

Whatever the fast reader accepts, `fhir.resources` must accept unchanged (no element dropped by
parse.py's repairs) and read the same way: every element, at every depth, with the same Python
value and type. Checked on every Observation, Condition, ImagingStudy, MedicationRequest and
MedicationStatement of the fixtures and the EHR-variant cases, raw and as the relevance filter
trims them, and on thousands of variants made by breaking them one element at a time (wrong
types, bad dates, nulls, extensions, a second value of a choice element ...). A variant either
reads the same both ways or is left to fhir.resources.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.fast import TYPES_READ, Element, read_plain
from cds_service.fhir.parse import parse_resource
from tests.clinical import test_ehr_variants
from tests.conftest import NOW

ROOT = Path(__file__).resolve().parents[2]

# Values a broken or unusual EHR may put anywhere.
ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    "  padded  ",
    "a\u00a0b",
    "line\nbreak",
    0,
    7,
    -1,
    2**31,
    1.5,
    float("1e300"),
    True,
    False,
    [],
    {},
    ["x"],
    [None],
    {"extension": [{"url": "http://x", "valueString": "y"}]},
    "2026",
    "2026-11",
    "2026-13",
    "2026-11-10",
    "2026-02-30",
    "0000-01-01",
    "2026-11-10T10:00:00Z",
    "2026-11-10T10:00:00",
    "2026-11-10T10:00Z",
    "2026-11-10T24:00:00Z",
    "2026-11-10T10:00:60Z",
    "2026-11-10T10:00:00.1234567Z",
    "2026-11-10T10:00:00.5+14:00",
    "2026-11-10T10:00:00+14:30",
    "2026-11-10T10:00:00-05:00",
    "20261110",
    "a b",
    "a  b",
    "http://loinc.org",
    "http://x y",
    "ab\tc",
]


def _resources_in(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for value in (request.get("prefetch") or {}).values():
        if not isinstance(value, dict):
            continue
        entries = (
            [e.get("resource") for e in value.get("entry") or [] if isinstance(e, dict)]
            if value.get("resourceType") == "Bundle"
            else [value]
        )
        yield from (r for r in entries if isinstance(r, dict) and r.get("resourceType") in TYPES_READ)


def _ehr_variant_resources() -> Iterator[dict[str, Any]]:
    for case in (
        test_ehr_variants.MS_CODED
        + test_ehr_variants.NOT_MS
        + test_ehr_variants.BACK_PAIN
        + test_ehr_variants.LEVELS
        + test_ehr_variants.MRI
    ):
        resources = case.values[0] if hasattr(case, "values") else case[0]
        yield from (r for r in resources if r.get("resourceType") in TYPES_READ)


_SCT, _LOINC = "http://snomed.info/sct", "http://loinc.org"
_CC = {
    "coding": [
        {"system": _SCT, "code": "279039007", "display": "Low back pain", "version": "2024-09", "userSelected": True}
    ],
    "text": "LBP",
}
_SUBJECT = {"reference": "Patient/p1", "type": "Patient", "display": "A"}
_RX = {
    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5640", "display": "ibuprofen"}],
    "text": "ibuprofen 400 mg",
}

# Every element the fast reader takes, with valid values of every kind (the fixtures do not use them all).
ALL_ELEMENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "id": "o-q",
        "status": "final",
        "code": {"coding": [{"system": _LOINC, "code": "72514-3"}]},
        "subject": _SUBJECT,
        "effectiveDateTime": "2026-11-10T08:15:00.123+01:00",
        "issued": "2026-11-10T09:00:00Z",
        "valueQuantity": {
            "value": 7,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
            "comparator": ">=",
        },
    },
    {
        "resourceType": "Observation",
        "id": "o-f",
        "status": "amended",
        "code": _CC,
        "effectivePeriod": {"start": "2026-11", "end": "2026-11-12"},
        "valueQuantity": {"value": 0.1},
        "bodySite": _CC,
        "note": [{"text": "worse at night", "authorString": "RN", "time": "2026-11-10"}],
    },
    {
        "resourceType": "Observation",
        "status": "final",
        "code": _CC,
        "effectiveInstant": "2026-11-10T08:15:00.5-05:00",
        "valueQuantity": {"value": 1e20},
    },
    {
        "resourceType": "Observation",
        "status": "preliminary",
        "code": _CC,
        "valueQuantity": {"value": 3.0},
        "effectiveDateTime": "2026",
    },
    {
        "resourceType": "Observation",
        "status": "final",
        "code": _CC,
        "valueBoolean": False,
        "effectiveDateTime": "2026-11-10",
    },
    {"resourceType": "Observation", "status": "final", "code": _CC, "valueCodeableConcept": _CC},
    {"resourceType": "Observation", "status": "final", "code": _CC, "valueString": "  none \t reported\n"},
    {
        "resourceType": "Observation",
        "status": "final",
        "code": _CC,
        "component": [
            {"code": _CC, "valueQuantity": {"value": 2.5}},
            {"code": _CC, "valueString": "L4"},
            {"code": _CC, "valueBoolean": True},
            {"code": _CC, "valueInteger": -3},
            {"code": _CC, "valueCodeableConcept": _CC},
            {"code": _CC},
        ],
    },
    {
        "resourceType": "Condition",
        "id": "c-1",
        "subject": _SUBJECT,
        "code": _CC,
        "clinicalStatus": _CC,
        "verificationStatus": _CC,
        "bodySite": [_CC, _CC],
        "onsetPeriod": {"start": "2026-10-01T00:00:00Z"},
        "abatementString": "resolved",
        "recordedDate": "2026-10",
        "note": [{"text": "n"}],
    },
    {
        "resourceType": "Condition",
        "subject": _SUBJECT,
        "code": _CC,
        "onsetString": "childhood",
        "abatementPeriod": {"end": "2020"},
    },
    {
        "resourceType": "Condition",
        "subject": _SUBJECT,
        "code": _CC,
        "onsetDateTime": "2026-11-10",
        "abatementDateTime": "2026-11-11T10:00:00Z",
    },
    {
        "resourceType": "ImagingStudy",
        "id": "i-1",
        "status": "available",
        "subject": _SUBJECT,
        "started": "2026-11-01T10:00:00Z",
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
        "procedureCode": [_CC],
        "description": "MRI",
        "series": [
            {
                "uid": "1.2.3",
                "modality": {"code": "MR"},
                "bodySite": {"system": _SCT, "code": "122494005"},
                "description": "sag T2",
            }
        ],
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m-1",
        "status": "active",
        "intent": "order",
        "subject": _SUBJECT,
        "authoredOn": "2026-11-01T16:20:00Z",
        "medicationCodeableConcept": _RX,
        "dosageInstruction": [{"text": "400 mg by mouth every 8 hours", "route": _CC}, {"text": "with food"}],
    },
    {
        "resourceType": "MedicationRequest",
        "status": "completed",
        "intent": "plan",
        "subject": _SUBJECT,
        "authoredOn": "2026-11",
        "medicationReference": {"reference": "Medication/med-1", "display": "ibuprofen"},
    },
    {
        "resourceType": "MedicationStatement",
        "id": "s-1",
        "status": "active",
        "subject": _SUBJECT,
        "medicationCodeableConcept": _RX,
        "effectiveDateTime": "2026-10-20",
        "dateAsserted": "2026-11-10T09:00:00+01:00",
        "dosage": [{"text": "as needed", "route": _CC}],
    },
    {
        "resourceType": "MedicationStatement",
        "status": "completed",
        "subject": _SUBJECT,
        "medicationReference": {"reference": "#m"},
        "effectivePeriod": {"start": "2026-09-01", "end": "2026-10-01"},
    },
]

# A valid value for each element a variant may add (so that a second value of a choice element is
# otherwise valid, and only the choice rule can refuse it).
VALID: dict[str, Any] = {
    "valueString": "x",
    "valueBoolean": True,
    "valueInteger": 3,
    "valueQuantity": {"value": 2},
    "valueCodeableConcept": {"text": "x"},
    "effectiveDateTime": "2026-11-10",
    "effectivePeriod": {"start": "2026-11-01"},
    "effectiveInstant": "2026-11-10T10:00:00Z",
    "onsetDateTime": "2026",
    "onsetPeriod": {"start": "2026"},
    "onsetString": "x",
    "abatementDateTime": "2026",
    "abatementPeriod": {"end": "2026"},
    "abatementString": "x",
    "medicationCodeableConcept": {"text": "naproxen"},
    "medicationReference": {"reference": "Medication/m"},
}


def corpus() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every distinct bulk resource of the fixtures and EHR variants, raw and trimmed; and the
    trimmed ones alone (what the fast reader sees in production: the relevance filter runs first)."""
    select = RelevanceFilter.from_value_sets().selector(NOW.date(), 90)
    found: dict[str, dict[str, Any]] = {}
    trimmed: dict[str, dict[str, Any]] = {}
    sources = [
        json.loads(p.read_text())
        for folder in ("patient-view", "order-entry")
        for p in sorted((ROOT / "fixtures" / folder).glob("*.json"))
        if p.name != "expected.json"
    ]
    raws = [r for request in sources for r in _resources_in(request)] + list(_ehr_variant_resources()) + ALL_ELEMENTS
    for raw in raws:
        found.setdefault(json.dumps(raw, sort_keys=True), raw)
        selected = select(copy.deepcopy(raw))
        if selected is not None:
            found.setdefault(json.dumps(selected, sort_keys=True), selected)
            trimmed.setdefault(json.dumps(selected, sort_keys=True), selected)
    return list(found.values()), list(trimmed.values())


CORPUS, TRIMMED = corpus()


def _same_value(fast: Any, model: Any, path: str) -> None:
    if isinstance(fast, Element):
        assert model is not None and type(model).__name__ == fast._fhir_type, path
        for name in type(fast)._elements:
            _same_value(getattr(fast, name), getattr(model, name), f"{path}.{name}")
        return
    if isinstance(fast, list):
        assert isinstance(model, list) and len(model) == len(fast), path
        for i, (a, b) in enumerate(zip(fast, model, strict=True)):
            _same_value(a, b, f"{path}[{i}]")
        return
    assert type(fast) is type(model), f"{path}: {type(fast).__name__} {fast!r} vs {type(model).__name__} {model!r}"
    assert fast == model, f"{path}: {fast!r} vs {model!r}"
    if isinstance(fast, dt.datetime):
        assert fast.utcoffset() == model.utcoffset(), path
    if isinstance(fast, Decimal):
        assert str(fast) == str(model), path


def assert_reads_the_same(raw: dict[str, Any]) -> bool:
    """True when the fast reader took `raw` (and then it read as fhir.resources does)."""
    fast = read_plain(copy.deepcopy(raw))
    if fast is None:
        return False
    outcome = parse_resource(copy.deepcopy(raw))
    assert outcome.resource is not None, f"fast reader accepted what fhir.resources refuses: {outcome.reason} {raw}"
    assert outcome.dropped == [], f"fast reader accepted what fhir.resources repairs: {outcome.dropped} {raw}"
    _same_value(fast, outcome.resource, raw["resourceType"])
    assert fast.get_resource_type() == outcome.resource.get_resource_type()
    return True


def test_the_corpus_is_mostly_read_fast() -> None:
    """The fixtures are the shapes EHRs send: most of them must take the fast path, or it is useless."""
    assert len(CORPUS) > 300 and len(TRIMMED) > 150
    taken = sum(assert_reads_the_same(raw) for raw in CORPUS)
    assert taken > 150
    taken_trimmed = sum(read_plain(copy.deepcopy(raw)) is not None for raw in TRIMMED)
    assert taken_trimmed / len(TRIMMED) > 0.8, f"{taken_trimmed} of {len(TRIMMED)}"


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,)
            yield from _leaf_paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield path + (i,)
            yield from _leaf_paths(value, path + (i,))


def _replaced(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    parent: Any = out
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = copy.deepcopy(value)
    return out


def _removed(raw: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    parent: Any = out
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return out


def variants(seed: int, count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    fast_ones = [raw for raw in CORPUS if read_plain(copy.deepcopy(raw)) is not None]
    for _ in range(count):
        raw = rng.choice(fast_ones)
        paths = [p for p in _leaf_paths(raw) if p != ("resourceType",)]
        path = rng.choice(paths)
        kind = rng.random()
        if kind < 0.75:
            yield _replaced(raw, path, rng.choice(ODD_VALUES))
        elif kind < 0.85:
            yield _removed(raw, path)
        elif kind < 0.93:  # a second value of a choice element, or an element this reader does not know
            extra = rng.choice(
                [
                    *VALID,
                    "valueString",
                    "valueBoolean",
                    "effectiveInstant",
                    "onsetString",
                    "abatementString",
                    "onsetAge",
                    "effectivePeriod",
                    "extension",
                    "modifierExtension",
                    "_status",
                    "meta",
                    "implicitRules",
                    "category",
                    "valueRange",
                    "text",
                ]
            )
            value = VALID[extra] if extra in VALID and rng.random() < 0.5 else rng.choice(ODD_VALUES)
            yield {**copy.deepcopy(raw), extra: copy.deepcopy(value)}
        else:  # an unknown key inside a nested object
            parent_paths = [p for p in paths if isinstance(_get(raw, p), dict)]
            if not parent_paths:
                continue
            p = rng.choice(parent_paths)
            yield _with_key(raw, p, "vendorThing", "x")


def _get(raw: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def _with_key(raw: dict[str, Any], path: tuple[Any, ...], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    _get(out, path)[key] = value
    return out


@pytest.mark.parametrize("seed", range(4))
def test_broken_variants_read_the_same_or_are_left_to_fhir_resources(seed: int) -> None:
    taken = refused = 0
    for variant in variants(seed, 1500):
        if assert_reads_the_same(variant):
            taken += 1
        else:
            refused += 1
    # Both sides exercised: some variants are still clean (e.g. a valid date for another), most are not.
    assert taken > 50 and refused > 500, (taken, refused)


def test_every_element_kind_is_read_the_same() -> None:
    for raw in ALL_ELEMENTS:
        assert assert_reads_the_same(raw), raw


def test_every_odd_value_in_every_place_of_every_element_kind() -> None:
    """The systematic sweep: each leaf of ALL_ELEMENTS replaced by each odd value, and removed."""
    taken = refused = 0
    for raw in ALL_ELEMENTS:
        for path in _leaf_paths(raw):
            if path == ("resourceType",):
                continue
            for variant in [_removed(raw, path), *(_replaced(raw, path, value) for value in ODD_VALUES)]:
                if assert_reads_the_same(variant):
                    taken += 1
                else:
                    refused += 1
    assert taken > 500 and refused > 5000, (taken, refused)


# The choice elements ([x]) of each type the fast reader takes.
CHOICES = {
    "Observation": ("value", "effective"),
    "Condition": ("onset", "abatement"),
    "MedicationRequest": ("medication",),
    "MedicationStatement": ("medication", "effective"),
    "ImagingStudy": (),
}
_TYPE_SUFFIXES = (
    "String",
    "Boolean",
    "Integer",
    "Quantity",
    "CodeableConcept",
    "Reference",
    "DateTime",
    "Period",
    "Instant",
)


def test_a_second_value_of_a_choice_element_is_left_to_fhir_resources() -> None:
    """fhir.resources refuses such a resource as a whole (parse.py then skips it): never read it fast."""
    checked: dict[str, int] = {}
    for raw in CORPUS:
        fast = read_plain(copy.deepcopy(raw))
        if fast is None:
            continue
        for name, value in VALID.items():
            prefix = name.removesuffix(next(s for s in _TYPE_SUFFIXES if name.endswith(s)))
            if (
                name in type(fast)._elements
                and prefix in CHOICES[raw["resourceType"]]
                and name not in raw
                and any(k.startswith(prefix) for k in raw)
            ):
                assert read_plain({**raw, name: value}) is None, (name, raw)
                assert parse_resource({**raw, name: value}).resource is None
                checked[raw["resourceType"]] = checked.get(raw["resourceType"], 0) + 1
    assert sum(checked.values()) > 100 and set(checked) == {t for t, groups in CHOICES.items() if groups}, checked


def test_an_absent_element_reads_as_none_and_a_wrong_name_raises() -> None:
    fast = read_plain({"resourceType": "Observation", "status": "final", "code": {"text": "back pain"}})
    assert fast is not None
    assert fast.valueQuantity is None and fast.effectiveDateTime is None and fast.code.coding is None
    assert fast.get_resource_type() == fast.resource_type == "Observation"
    with pytest.raises(AttributeError):
        fast.valueQuantiy  # noqa: B018 - a typo must not read as "absent"
    with pytest.raises(AttributeError):
        fast.status = "amended"  # type: ignore[misc]
