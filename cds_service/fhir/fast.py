"""A fast reader for the clean, common shape of the bulk resources (Observation, Condition,
ImagingStudy, MedicationRequest, MedicationStatement), for the elements the rules read. Never wider
than `fhir.resources`.

Validating one resource with `fhir.resources` costs 60-100 µs, most of it model machinery rather
than checks, and a long record has hundreds of relevant Observations. This reader accepts a
resource only when every element in it is one it knows, in the plain form most EHRs send, and
every value passes checks at least as strict as FHIR R4's (the patterns of its primitive types,
required elements, one value per choice element; no nulls, empty lists or extensions). It then
builds light read-only objects with the attribute names of the `fhir.resources` models and the
same Python values (dates as `date` / `datetime` / partial-date `str`, decimals as `Decimal`); an
element of the type that is absent reads as None, as on a model.

Anything else gives None, and the caller validates with `fhir.resources` as before (parse.py, with
its repairs). So a resource read here is one `fhir.resources` would accept unchanged and read the
same way: tests/test_fast_reader.py compares the two on every fixture and on thousands of variants.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class


class _NotPlain(Exception):
    """The resource is not in the plain shape this reader takes: validate it fully instead.

    Raised as a fresh instance every time (`raise _NotPlain`), never as one shared instance: a
    raised exception collects the frames it passes through in its `__traceback__`, and a shared
    one would keep every request's resources alive through them (a leak of the whole request)."""


class Element:
    """A read-only stand-in for a `fhir.resources` model: the elements present are attributes;
    any other element of the FHIR type reads as None; a name that is no element raises."""

    _fhir_type = "Element"
    _elements: frozenset[str] = frozenset()

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only called for names not set in __init__
        if name in type(self)._elements:
            return None
        raise AttributeError(f"{type(self)._fhir_type} has no element {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")

    def __repr__(self) -> str:
        return f"{self._fhir_type}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class Resource(Element):
    def get_resource_type(self) -> str:
        return self._fhir_type

    @property
    def resource_type(self) -> str:
        return self._fhir_type


@cache
def _element_class(fhir_type: str, base: type[Element] = Element) -> type[Element]:
    model = get_fhir_model_class(fhir_type)
    return type(fhir_type, (base,), {"_fhir_type": fhir_type, "_elements": frozenset(model.model_fields)})


# --- primitive values (FHIR R4 patterns; stricter where Python's types are) --------------------------

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_URI = re.compile(r"\S+")
_STRING = re.compile(r"[ \r\n\t\S]+")
_PARTIAL_DATE = re.compile(r"[0-9]{4}(-(0[1-9]|1[0-2]))?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"
)
_INT32 = (-(2**31), 2**31 - 1)


def _matching(pattern: re.Pattern[str]) -> Callable[[Any], str]:
    """A reader of a string primitive that must match `pattern` as a whole."""

    def read(value: Any) -> str:
        if type(value) is str and pattern.fullmatch(value):
            return value
        raise _NotPlain

    return read


_string, _code, _uri, _id = _matching(_STRING), _matching(_CODE), _matching(_URI), _matching(_ID)


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _NotPlain


def _integer(value: Any) -> int:
    if type(value) is int and _INT32[0] <= value <= _INT32[1]:
        return value
    raise _NotPlain


def _decimal(value: Any) -> Decimal:
    if (type(value) is int or type(value) is float) and math.isfinite(value):
        return Decimal(repr(value))  # what fhir.resources makes of a JSON number
    raise _NotPlain


def _date_time(value: Any) -> str | dt.date | dt.datetime:
    """As fhir.resources reads a dateTime: a year or year-month stays a string, a date is a
    `date`, a date with time a `datetime` (with its offset)."""
    if type(value) is not str or value.startswith("0000"):
        raise _NotPlain
    try:
        if len(value) <= 7 and _PARTIAL_DATE.fullmatch(value):
            return value
        if len(value) == 10 and _DATE.fullmatch(value):
            return dt.date.fromisoformat(value)
        if _DATE_TIME.fullmatch(value):
            return dt.datetime.fromisoformat(value)
    except ValueError:
        pass
    raise _NotPlain


def _instant(value: Any) -> dt.datetime:
    if type(value) is str and _DATE_TIME.fullmatch(value) and not value.startswith("0000"):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise _NotPlain


# --- complex values ------------------------------------------------------------------------------

Reader = Callable[[Any], Any]


def _list_of(read: Reader) -> Reader:
    def read_list(value: Any) -> list[Any]:
        if type(value) is list and value:
            return [read(item) for item in value]
        raise _NotPlain

    return read_list


def _complex(
    fhir_type: str,
    elements: dict[str, Reader],
    required: tuple[str, ...] = (),
    choices: tuple[tuple[str, ...], ...] = (),
    base: type[Element] = Element,
    required_choices: tuple[tuple[str, ...], ...] = (),
) -> Reader:
    """A reader of one complex type: a JSON object with only `elements` (each read by its
    reader), all of `required`, at most one element of each group in `choices`, and exactly one of
    each group in `required_choices` (a 1..1 choice element such as medication[x])."""
    cls = _element_class(fhir_type, base)  # type: ignore[arg-type]  # classes are hashable

    def read(value: Any) -> Element:
        if type(value) is not dict or not value:
            raise _NotPlain
        values: dict[str, Any] = {}
        for name, item in value.items():
            reader = elements.get(name)
            if reader is None:
                raise _NotPlain
            values[name] = reader(item)
        for name in required:
            if name not in values:
                raise _NotPlain
        for group in choices:
            if sum(name in values for name in group) > 1:
                raise _NotPlain
        for group in required_choices:
            if sum(name in values for name in group) != 1:
                raise _NotPlain
        return cls(values)

    return read


def _resource_type(name: str) -> Reader:
    def read(value: Any) -> str:
        if value == name:
            return name
        raise _NotPlain

    return read


_coding = _complex(
    "Coding", {"system": _uri, "version": _string, "code": _code, "display": _string, "userSelected": _boolean}
)
_codeable_concept = _complex("CodeableConcept", {"coding": _list_of(_coding), "text": _string})
_reference = _complex("Reference", {"reference": _string, "type": _uri, "display": _string})
_period = _complex("Period", {"start": _date_time, "end": _date_time})
_quantity = _complex(
    "Quantity", {"value": _decimal, "comparator": _code, "unit": _string, "system": _uri, "code": _code}
)
_annotation = _complex("Annotation", {"text": _string, "authorString": _string, "time": _date_time}, required=("text",))

_OBSERVATION_VALUES = {
    "valueCodeableConcept": _codeable_concept,
    "valueString": _string,
    "valueBoolean": _boolean,
    "valueInteger": _integer,
    "valueQuantity": _quantity,
}
_component = _complex(
    "ObservationComponent",
    {"code": _codeable_concept, **_OBSERVATION_VALUES},
    required=("code",),
    choices=(tuple(_OBSERVATION_VALUES),),
)
_observation = _complex(
    "Observation",
    {
        "resourceType": _resource_type("Observation"),
        "id": _id,
        "status": _code,
        "code": _codeable_concept,
        "subject": _reference,
        "bodySite": _codeable_concept,
        "note": _list_of(_annotation),
        "component": _list_of(_component),
        "effectiveDateTime": _date_time,
        "effectivePeriod": _period,
        "effectiveInstant": _instant,
        "issued": _instant,
        **_OBSERVATION_VALUES,
    },
    required=("resourceType", "status", "code"),
    choices=(("effectiveDateTime", "effectivePeriod", "effectiveInstant"), tuple(_OBSERVATION_VALUES)),
    base=Resource,
)
_condition = _complex(
    "Condition",
    {
        "resourceType": _resource_type("Condition"),
        "id": _id,
        "clinicalStatus": _codeable_concept,
        "verificationStatus": _codeable_concept,
        "category": _list_of(_codeable_concept),
        "code": _codeable_concept,
        "bodySite": _list_of(_codeable_concept),
        "subject": _reference,
        "onsetDateTime": _date_time,
        "onsetPeriod": _period,
        "onsetString": _string,
        "abatementDateTime": _date_time,
        "abatementPeriod": _period,
        "abatementString": _string,
        "recordedDate": _date_time,
        "note": _list_of(_annotation),
    },
    required=("resourceType", "subject"),
    choices=(
        ("onsetDateTime", "onsetPeriod", "onsetString"),
        ("abatementDateTime", "abatementPeriod", "abatementString"),
    ),
    base=Resource,
)
_series = _complex(
    "ImagingStudySeries",
    {"uid": _id, "modality": _coding, "bodySite": _coding, "description": _string},
    required=("uid", "modality"),
)
_imaging_study = _complex(
    "ImagingStudy",
    {
        "resourceType": _resource_type("ImagingStudy"),
        "id": _id,
        "status": _code,
        "subject": _reference,
        "started": _date_time,
        "modality": _list_of(_coding),
        "procedureCode": _list_of(_codeable_concept),
        "description": _string,
        "series": _list_of(_series),
    },
    required=("resourceType", "status", "subject"),
    base=Resource,
)

_dosage = _complex("Dosage", {"text": _string, "route": _codeable_concept})
_MEDICATION = {"medicationCodeableConcept": _codeable_concept, "medicationReference": _reference}
_medication_request = _complex(
    "MedicationRequest",
    {
        "resourceType": _resource_type("MedicationRequest"),
        "id": _id,
        "status": _code,
        "intent": _code,
        "subject": _reference,
        "authoredOn": _date_time,
        "dosageInstruction": _list_of(_dosage),
        **_MEDICATION,
    },
    required=("resourceType", "status", "intent", "subject"),
    required_choices=(tuple(_MEDICATION),),
    base=Resource,
)
_medication_statement = _complex(
    "MedicationStatement",
    {
        "resourceType": _resource_type("MedicationStatement"),
        "id": _id,
        "status": _code,
        "subject": _reference,
        "effectiveDateTime": _date_time,
        "effectivePeriod": _period,
        "dateAsserted": _date_time,
        "dosage": _list_of(_dosage),
        **_MEDICATION,
    },
    required=("resourceType", "status", "subject"),
    choices=(("effectiveDateTime", "effectivePeriod"),),
    required_choices=(tuple(_MEDICATION),),
    base=Resource,
)


_READERS: dict[str, Reader] = {
    "Observation": _observation,
    "Condition": _condition,
    "ImagingStudy": _imaging_study,
    "MedicationRequest": _medication_request,
    "MedicationStatement": _medication_statement,
}
TYPES_READ = frozenset(_READERS)


def read_plain(raw: Any) -> Resource | None:
    """The resource as light read-only objects, or None when it is not in the plain shape (then
    validate it with parse.parse_resource)."""
    if type(raw) is not dict:
        return None
    resource_type = raw.get("resourceType")
    reader = _READERS.get(resource_type) if type(resource_type) is str else None  # a list or object is no key
    if reader is None:
        return None
    try:
        resource: Resource = reader(raw)
        return resource
    except _NotPlain:
        return None
