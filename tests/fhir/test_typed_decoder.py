"""The typed decoder (cds_service/fhir/schema.py + decode.py) against `fhir.resources`, the reference.

The typed decoder reads only the elements declared in schema.py and skips every other one. So the
reference is `fhir.resources` reading the same resource with its undeclared top-level elements left
out: whatever the typed decoder accepts, `fhir.resources` must accept too (parse.py may repair
undeclared nested elements, never a declared one) and read every declared element the same way, at
every depth (dates as the same calendar values and offsets, decimals as the same numbers). Checked
on every resource of a declared type in the fixtures and the EHR-variant cases, and on thousands of
variants made by breaking them one element at a time (wrong types, bad dates, nulls, extensions, a
second value of a choice element ...). A variant either reads the same both ways or is left to
fhir.resources. Decoding from JSON bytes (the request body) and from parsed JSON (the FHIR server)
give the same result.
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

import msgspec
import pytest

from cds_service.fhir.decode import typed_resource
from cds_service.fhir.parse import parse_resource
from cds_service.fhir.schema import TYPES_READ, AnyResource, Resource, conforms
from tests.clinical import test_ehr_variants

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

# Every element the typed decoder declares, with valid values of every kind (the fixtures do not use them all).
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

ALL_ELEMENTS += [
    {
        "resourceType": "Condition",
        "subject": _SUBJECT,
        "code": _CC,
        "category": [_CC, {"coding": [{"system": "http://x", "code": "problem-list-item"}]}],
        "onsetAge": {"value": 40, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
        "abatementRange": {"low": {"value": 41}, "high": {"value": 42}},
    },
    {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": _SUBJECT,
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}],
        "basedOn": [{"reference": "ServiceRequest/o1"}],
        "procedureReference": {"reference": "Procedure/p1"},
    },
    {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "status": "final",
        "category": [{"coding": [{"system": _LOINC, "code": "LP29684-5", "display": "Radiology"}]}],
        "code": {"coding": [{"system": _LOINC, "code": "24937-5"}], "text": "MRI cervical spine"},
        "subject": _SUBJECT,
        "effectiveDateTime": "2026-11-01T10:00:00Z",
        "issued": "2026-11-01T12:00:00.5+01:00",
        "identifier": [{"value": "acc-1"}],
        "basedOn": [{"reference": "ServiceRequest/o1"}],
        "imagingStudy": [{"reference": "ImagingStudy/i-1"}],
    },
    {
        "resourceType": "DiagnosticReport",
        "status": "amended",
        "code": _CC,
        "effectivePeriod": {"start": "2026-11-01", "end": "2026-11-02"},
    },
    {
        "resourceType": "Procedure",
        "id": "pr-1",
        "status": "completed",
        "subject": _SUBJECT,
        "code": _CC,
        "bodySite": [_CC],
        "performedDateTime": "2026-11-01",
        "identifier": [{"system": "urn:x", "value": "1"}],
        "basedOn": [{"reference": "ServiceRequest/o1"}],
        "report": [{"reference": "DiagnosticReport/dr-1"}],
    },
    {"resourceType": "Procedure", "status": "in-progress", "subject": _SUBJECT, "performedPeriod": {"start": "2026"}},
    {"resourceType": "Procedure", "status": "completed", "subject": _SUBJECT, "performedString": "last spring"},
    {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": _SUBJECT,
        "period": {"start": "2026-11-20T09:00:00Z", "end": "2026-11-20T09:30:00Z"},
        "reasonCode": [_CC],
        "reasonReference": [{"reference": "Condition/c-1"}],
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
    "performedDateTime": "2026-11-01",
    "performedPeriod": {"start": "2026-11-01"},
    "performedString": "x",
}


def corpus() -> list[dict[str, Any]]:
    """Every distinct resource of a declared type in the fixtures and EHR variants."""
    found: dict[str, dict[str, Any]] = {}
    sources = [
        json.loads(p.read_text())
        for folder in ("patient-view", "order-entry")
        for p in sorted((ROOT / "fixtures" / folder).glob("*.json"))
        if p.name != "expected.json"
    ]
    raws = [r for request in sources for r in _resources_in(request)] + list(_ehr_variant_resources()) + ALL_ELEMENTS
    for raw in raws:
        found.setdefault(json.dumps(raw, sort_keys=True), raw)
    return list(found.values())


CORPUS = corpus()
_BYTES_DECODER = msgspec.json.Decoder(AnyResource)


def _declared(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` without its undeclared top-level elements: what the typed decoder reads of it."""
    cls = next(cls for cls in AnyResource.__args__ if cls.__name__ == raw["resourceType"])
    declared = {field.encode_name for field in msgspec.structs.fields(cls)}
    return {k: v for k, v in raw.items() if k in declared or k == "resourceType"}


def _same_value(typed: Any, model: Any, path: str) -> None:
    if isinstance(typed, msgspec.Struct):
        assert model is not None, path
        for name in typed.__struct_fields__:
            theirs = model.get_resource_type() if name == "resourceType" else getattr(model, name)
            _same_value(getattr(typed, name), theirs, f"{path}.{name}")
        return
    if isinstance(typed, tuple):
        assert isinstance(model, list) and len(model) == len(typed), path
        for i, (a, b) in enumerate(zip(typed, model, strict=True)):
            _same_value(a, b, f"{path}[{i}]")
        return
    if isinstance(model, dt.datetime):
        assert isinstance(typed, str) and len(typed) > 10, path
        ours = dt.datetime.fromisoformat(typed)
        assert ours == model and ours.utcoffset() == model.utcoffset(), f"{path}: {typed!r} vs {model!r}"
        return
    if isinstance(model, dt.date):
        assert isinstance(typed, str) and dt.date.fromisoformat(typed) == model, f"{path}: {typed!r} vs {model!r}"
        return
    if isinstance(model, Decimal):
        assert type(typed) in (int, float) and str(Decimal(repr(typed))) == str(model), (
            f"{path}: {typed!r} vs {model!r}"
        )
        return
    assert type(typed) is type(model), f"{path}: {type(typed).__name__} {typed!r} vs {type(model).__name__} {model!r}"
    assert typed == model, f"{path}: {typed!r} vs {model!r}"


def assert_reads_the_same(raw: dict[str, Any]) -> bool:
    """True when the typed decoder took `raw` (and then it read as fhir.resources does)."""
    typed = typed_resource(copy.deepcopy(raw))
    from_bytes: Resource | None
    try:
        from_bytes = _BYTES_DECODER.decode(json.dumps(raw).encode())
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, RecursionError):  # NaN is no JSON
        from_bytes = None
    if from_bytes is not None and not conforms(from_bytes):
        from_bytes = None
    # The parsed-JSON path also reads codes sent as numbers (as their strings, as fhir.resources does);
    # the request-body path leaves such a value to it.
    assert from_bytes is None or from_bytes == typed, f"the request-body path and the parsed-JSON path differ: {raw}"
    if typed is None:
        return False
    outcome = parse_resource(copy.deepcopy(_declared(raw)))
    assert outcome.resource is not None, f"typed decoder accepted what fhir.resources refuses: {outcome.reason} {raw}"
    _same_value(typed, outcome.resource, raw["resourceType"])
    assert typed.get_resource_type() == outcome.resource.get_resource_type()
    return True


def test_the_corpus_is_mostly_read_typed() -> None:
    """The fixtures are the shapes EHRs send: nearly all of them must take the typed path."""
    assert len(CORPUS) > 250
    taken = sum(assert_reads_the_same(raw) for raw in CORPUS)
    assert taken / len(CORPUS) > 0.9, f"{taken} of {len(CORPUS)}"


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
    fast_ones = [raw for raw in CORPUS if typed_resource(copy.deepcopy(raw)) is not None]
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
    assert taken > 500 and refused > 300, (taken, refused)


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


# The choice elements ([x]) of each declared type.
CHOICES = {
    "Observation": ("value", "effective"),
    "Condition": ("onset", "abatement"),
    "MedicationRequest": ("medication",),
    "MedicationStatement": ("medication", "effective"),
    "ImagingStudy": (),
    "DiagnosticReport": ("effective",),
    "Procedure": ("performed",),
    "Encounter": (),
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
    """fhir.resources refuses such a resource as a whole (parse.py then skips it): never read it typed."""
    checked: dict[str, int] = {}
    for raw in CORPUS:
        typed = typed_resource(copy.deepcopy(raw))
        if typed is None:
            continue
        for name, value in VALID.items():
            prefix = name.removesuffix(next(s for s in _TYPE_SUFFIXES if name.endswith(s)))
            if (
                name in typed.__struct_fields__
                and prefix in CHOICES[raw["resourceType"]]
                and name not in raw
                and any(k.startswith(prefix) for k in raw)
            ):
                assert typed_resource({**raw, name: value}) is None, (name, raw)
                assert parse_resource({**raw, name: value}).resource is None
                checked[raw["resourceType"]] = checked.get(raw["resourceType"], 0) + 1
    assert sum(checked.values()) > 100 and set(checked) == {t for t, groups in CHOICES.items() if groups}, checked


def test_an_absent_element_reads_as_none_and_a_wrong_name_raises() -> None:
    typed = typed_resource({"resourceType": "Observation", "status": "final", "code": {"text": "back pain"}})
    assert typed is not None
    assert typed.valueQuantity is None and typed.effectiveDateTime is None and typed.code.coding is None
    assert typed.get_resource_type() == typed.resource_type == "Observation"
    with pytest.raises(AttributeError):
        typed.valueQuantiy  # noqa: B018 - a typo must not read as "absent": every element read is declared
    with pytest.raises(AttributeError):
        typed.status = "amended"  # type: ignore[misc]


def test_undeclared_elements_are_skipped_unread() -> None:
    raw = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Heart rate", "extension": [{"url": "x", "valueString": 5}]},
        "text": {"status": "generated", "div": 7},  # not even valid: never read
        "performer": [{"reference": "Practitioner/1"}],
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    typed = typed_resource(raw)
    assert typed is not None and typed.valueQuantity.value == 72
    assert not hasattr(typed, "performer") and not hasattr(typed, "text")


def test_every_resource_type_the_service_wants_is_declared() -> None:
    from cds_service.services.patient_data import WANTED_TYPES

    assert WANTED_TYPES <= TYPES_READ


def test_an_element_with_nothing_declared_in_it_is_left_to_fhir_resources() -> None:
    raw = {"resourceType": "Condition", "subject": {"resourceType": "Condition"}, "code": {"text": "x"}}
    assert typed_resource(raw) is None and parse_resource(raw).resource is None
    extension_only = {**raw, "subject": {"reference": "Patient/p1"}, "code": {"extension": [{"url": "x"}]}}
    assert typed_resource(extension_only) is None  # fhir.resources reads (or refuses) it


def test_a_lone_surrogate_is_left_to_fhir_resources() -> None:
    """Only parsed JSON can hold one (the request body's decoder refuses it); fhir.resources drops it."""
    raw = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueString": "\ud800"}
    assert typed_resource(raw) is None
    assert typed_resource({**raw, "valueQuantity": "\ud800", "valueString": "ok"}) is None
