"""The reading contract: one declaration per FHIR R4 resource type of the elements the rules read.

These msgspec Structs are the only list of what the service reads from a prefetch. Decoding is
derived from them (`decode.py`): the JSON is decoded straight into them, and every element not
declared here is skipped unread. A rule that reads an element must find it declared here (an
undeclared name raises AttributeError, it never silently reads as absent); the relevance pre-filter
(clinical/relevance.py) walks whatever is declared.

Attribute names are the FHIR JSON names, as on the `fhir.resources` models, so the rules read
either the same way (the fall-back reader for what these declarations decline). Values are
checked at least as strictly as FHIR R4 checks them (the patterns of its primitive types, required
elements, one value per choice element, real calendar dates), so a resource read here is one
`fhir.resources` would also read, with the same values for every declared element
(tests/fhir/test_typed_decoder.py). Decoding checks the JSON types and required elements; the
rest (`conforms()`) is checked only for the resources the rules go on to use, since most of a long
record is not. Dates stay as their FHIR strings (`clinical.reading.to_date`
reads them); decimals are JSON numbers (int or float). Structs are frozen (read-only and hashable)
and hold no reference cycles (`gc=False`).
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from functools import cache
from typing import Annotated, Any, ClassVar

import msgspec

# --- primitive types --------------------------------------------------------------------------------


class FhirPattern:
    """The FHIR R4 pattern of a primitive type, kept as metadata of its annotation: decoding does not
    check it (it is the costly part, and most of a long record is never used); `conforms()` does,
    for the resources that are used. `calendar`: the value must also be a real date or date-time."""

    __slots__ = ("regex", "calendar")

    def __init__(self, pattern: str, calendar: bool = False):
        self.regex = re.compile(pattern)
        self.calendar = calendar

    def check(self, value: str) -> None:
        if self.regex.fullmatch(value) is None:
            raise ValueError("does not match its FHIR pattern")
        value.encode("utf-8")  # a lone surrogate (only parsed JSON can hold one) is no FHIR string: ValueError
        if self.calendar:
            if value.startswith("0000"):
                raise ValueError("year 0000")
            if len(value) > 10:
                dt.datetime.fromisoformat(value)
            elif len(value) == 10:
                dt.date.fromisoformat(value)


_ZONE = r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"
Id = Annotated[str, FhirPattern(r"[A-Za-z0-9\-.]{1,64}")]
Code = Annotated[str, FhirPattern(r"[^\s]+(\s[^\s]+)*")]
Uri = Annotated[str, FhirPattern(r"\S+")]
String = Annotated[str, FhirPattern(r"[ \r\n\t\S]+")]
# A year, year-month, date, or date-time with seconds and a zone.
DateTime = Annotated[
    str,
    FhirPattern(
        r"[0-9]{4}(-(0[1-9]|1[0-2])(-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?" + _ZONE + r")?)?)?",
        calendar=True,
    ),
]
Instant = Annotated[
    str,
    FhirPattern(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?" + _ZONE, calendar=True),
]
Integer = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Decimal = int | float  # a JSON number; `Decimal(repr(value))` is what fhir.resources holds


def _at_most_one(struct: Any, *names: str) -> None:
    if sum(getattr(struct, name) is not None for name in names) > 1:
        raise ValueError(f"more than one of {', '.join(names)}")


def _exactly_one(struct: Any, *names: str) -> None:
    if sum(getattr(struct, name) is not None for name in names) != 1:
        raise ValueError(f"exactly one of {', '.join(names)} is required")


# --- complex types -------------------------------------------------------------------------------


class Element(msgspec.Struct, frozen=True, gc=False):
    """Read-only, hashable, and never part of a reference cycle (so the cyclic collector skips it)."""

    # Can this type name a clinical thing (a finding, a drug, a procedure)? Codings, concepts, notes
    # and resources can; quantities, periods, ranges, references and identifiers cannot.
    names_things: ClassVar[bool] = True

    def check(self) -> None:
        """The type's own rules beyond its elements' types (one value per choice element ...)."""


class Coding(Element, frozen=True):
    system: Uri | None = None
    version: String | None = None
    code: Code | None = None
    display: String | None = None
    userSelected: bool | None = None


class CodeableConcept(Element, frozen=True):
    coding: tuple[Coding, ...] | None = None
    text: String | None = None


class Reference(Element, frozen=True):
    names_things = False

    reference: String | None = None
    type: Uri | None = None
    display: String | None = None


class Period(Element, frozen=True):
    names_things = False

    start: DateTime | None = None
    end: DateTime | None = None


class Quantity(Element, frozen=True):
    names_things = False

    value: Decimal | None = None
    comparator: Code | None = None
    unit: String | None = None
    system: Uri | None = None
    code: Code | None = None


class Range(Element, frozen=True):
    names_things = False

    low: Quantity | None = None
    high: Quantity | None = None


class Identifier(Element, frozen=True):
    names_things = False

    system: Uri | None = None
    value: String | None = None


class Annotation(Element, frozen=True):
    text: String
    authorString: String | None = None
    time: DateTime | None = None


class Dosage(Element, frozen=True):
    text: String | None = None
    route: CodeableConcept | None = None


class ContainedResource(Element, frozen=True):
    """A contained resource of any type: the rules look for a contained Medication's code."""

    resourceType: Code
    id: Id | None = None
    code: CodeableConcept | None = None

    def get_resource_type(self) -> str:
        return self.resourceType


# --- resources -----------------------------------------------------------------------------------


class Resource(Element, frozen=True, tag_field="resourceType"):
    """A resource decoded under its type's declaration; `resourceType` is the tag."""

    def get_resource_type(self) -> str:
        return type(self).__name__

    @property
    def resource_type(self) -> str:
        return type(self).__name__


class Patient(Resource, frozen=True, tag="Patient"):
    """Read by no rule: only its id, to refuse another patient's record."""

    id: Id | None = None


class ObservationComponent(Element, frozen=True):
    code: CodeableConcept
    valueCodeableConcept: CodeableConcept | None = None
    valueString: String | None = None
    valueBoolean: bool | None = None
    valueInteger: Integer | None = None
    valueQuantity: Quantity | None = None

    def check(self) -> None:
        _at_most_one(self, *OBSERVATION_VALUES)


OBSERVATION_VALUES = ("valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueQuantity")


class Observation(Resource, frozen=True, tag="Observation"):
    status: Code
    code: CodeableConcept
    id: Id | None = None
    subject: Reference | None = None
    bodySite: CodeableConcept | None = None
    note: tuple[Annotation, ...] | None = None
    component: tuple[ObservationComponent, ...] | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None
    effectiveInstant: Instant | None = None
    issued: Instant | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueString: String | None = None
    valueBoolean: bool | None = None
    valueInteger: Integer | None = None
    valueQuantity: Quantity | None = None

    def check(self) -> None:
        _at_most_one(self, "effectiveDateTime", "effectivePeriod", "effectiveInstant")
        _at_most_one(self, *OBSERVATION_VALUES)


class Condition(Resource, frozen=True, tag="Condition"):
    subject: Reference
    id: Id | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    category: tuple[CodeableConcept, ...] | None = None  # problem list, encounter diagnosis ...
    code: CodeableConcept | None = None
    bodySite: tuple[CodeableConcept, ...] | None = None
    recordedDate: DateTime | None = None
    note: tuple[Annotation, ...] | None = None
    # Every onset[x] and abatement[x], read or not: two of one kind make the resource invalid.
    onsetDateTime: DateTime | None = None
    onsetAge: Quantity | None = None
    onsetPeriod: Period | None = None
    onsetRange: Range | None = None
    onsetString: String | None = None
    abatementDateTime: DateTime | None = None
    abatementAge: Quantity | None = None
    abatementPeriod: Period | None = None
    abatementRange: Range | None = None
    abatementString: String | None = None

    def check(self) -> None:
        _at_most_one(self, "onsetDateTime", "onsetAge", "onsetPeriod", "onsetRange", "onsetString")
        _at_most_one(self, "abatementDateTime", "abatementAge", "abatementPeriod", "abatementRange", "abatementString")


class ImagingStudySeries(Element, frozen=True):
    uid: Id
    modality: Coding
    bodySite: Coding | None = None
    description: String | None = None


class ImagingStudy(Resource, frozen=True, tag="ImagingStudy"):
    status: Code
    subject: Reference
    id: Id | None = None
    started: DateTime | None = None
    modality: tuple[Coding, ...] | None = None
    procedureCode: tuple[CodeableConcept, ...] | None = None
    description: String | None = None
    series: tuple[ImagingStudySeries, ...] | None = None
    # identifier, basedOn and procedureReference tie one study's records together
    identifier: tuple[Identifier, ...] | None = None
    basedOn: tuple[Reference, ...] | None = None
    procedureReference: Reference | None = None


class MedicationRequest(Resource, frozen=True, tag="MedicationRequest"):
    status: Code
    intent: Code  # not read, but required (1..1)
    subject: Reference
    id: Id | None = None
    authoredOn: DateTime | None = None
    dosageInstruction: tuple[Dosage, ...] | None = None
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    contained: tuple[ContainedResource, ...] | None = None

    def check(self) -> None:
        _exactly_one(self, "medicationCodeableConcept", "medicationReference")


class MedicationStatement(Resource, frozen=True, tag="MedicationStatement"):
    status: Code
    subject: Reference
    id: Id | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None
    dateAsserted: DateTime | None = None
    dosage: tuple[Dosage, ...] | None = None
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    contained: tuple[ContainedResource, ...] | None = None

    def check(self) -> None:
        _at_most_one(self, "effectiveDateTime", "effectivePeriod")
        _exactly_one(self, "medicationCodeableConcept", "medicationReference")


class Medication(Resource, frozen=True, tag="Medication"):
    id: Id | None = None
    code: CodeableConcept | None = None


class DiagnosticReport(Resource, frozen=True, tag="DiagnosticReport"):
    status: Code
    code: CodeableConcept
    id: Id | None = None
    category: tuple[CodeableConcept, ...] | None = None
    subject: Reference | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None
    issued: Instant | None = None
    identifier: tuple[Identifier, ...] | None = None
    basedOn: tuple[Reference, ...] | None = None
    imagingStudy: tuple[Reference, ...] | None = None

    def check(self) -> None:
        _at_most_one(self, "effectiveDateTime", "effectivePeriod")


class Procedure(Resource, frozen=True, tag="Procedure"):
    status: Code
    subject: Reference
    id: Id | None = None
    code: CodeableConcept | None = None
    bodySite: tuple[CodeableConcept, ...] | None = None
    # Every performed[x], read or not: two of one kind make the resource invalid.
    performedDateTime: DateTime | None = None
    performedPeriod: Period | None = None
    performedString: String | None = None
    performedAge: Quantity | None = None
    performedRange: Range | None = None
    identifier: tuple[Identifier, ...] | None = None
    basedOn: tuple[Reference, ...] | None = None
    report: tuple[Reference, ...] | None = None

    def check(self) -> None:
        _at_most_one(self, "performedDateTime", "performedPeriod", "performedString", "performedAge", "performedRange")


class Encounter(Resource, frozen=True, tag="Encounter"):
    status: Code
    class_fhir: Coding = msgspec.field(name="class")  # not read, but required (1..1); named as on the model
    id: Id | None = None
    subject: Reference | None = None
    period: Period | None = None
    reasonCode: tuple[CodeableConcept, ...] | None = None
    reasonReference: tuple[Reference, ...] | None = None


# --- what a prefetch value is --------------------------------------------------------------------


class Issue(Element, frozen=True):
    severity: Code | None = None


class OperationOutcome(Resource, frozen=True, tag="OperationOutcome"):
    issue: tuple[Issue, ...] | None = None


DECLARED = (
    Patient,
    Observation,
    Condition,
    ImagingStudy,
    MedicationRequest,
    MedicationStatement,
    Medication,
    DiagnosticReport,
    Procedure,
    Encounter,
)
TYPES_READ = frozenset(cls.__name__ for cls in DECLARED)
AnyResource = (
    Patient
    | Observation
    | Condition
    | ImagingStudy
    | MedicationRequest
    | MedicationStatement
    | Medication
    | DiagnosticReport
    | Procedure
    | Encounter
)


class BundleLink(Element, frozen=True):
    relation: String | None = None


class BundleEntry(Element, frozen=True):
    resource: AnyResource | OperationOutcome | None = None


class Bundle(Resource, frozen=True, tag="Bundle"):
    link: tuple[BundleLink, ...] | None = None
    entry: tuple[BundleEntry, ...] | None = None


PrefetchValue = Bundle | OperationOutcome | AnyResource


# --- conformance: what decoding leaves unchecked ---------------------------------------------------


def _pattern_of(hint: Any) -> FhirPattern | None:
    if typing.get_origin(hint) is Annotated:
        return next((m for m in hint.__metadata__ if isinstance(m, FhirPattern)), None)
    for arg in typing.get_args(hint):  # X | None
        found = _pattern_of(arg)
        if found is not None:
            return found
    return None


@cache
def _patterns(cls: type[Element]) -> tuple[tuple[str, FhirPattern | None], ...]:
    """Each declared element of `cls` with the FHIR pattern of its primitive type, if any."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((name, _pattern_of(hints[name])) for name in cls.__struct_fields__)


def _check(element: Element, passed: set[Element] | None = None) -> None:
    if passed is not None and element in passed:
        return
    empty = True
    for name, pattern in _patterns(type(element)):
        value = getattr(element, name)
        if value is None:
            continue
        empty = False
        if pattern is not None:
            pattern.check(value)
        elif isinstance(value, Element):
            _check(value, passed)
        elif isinstance(value, tuple):
            if not value:
                raise ValueError("an empty array")
            for item in value:
                _check(item, passed)
    if empty and not isinstance(element, Resource):
        # Nothing declared in it: FHIR wants every element to hold something, and what it holds (an
        # extension, or an element that is no element of the type) is for fhir.resources to judge.
        raise ValueError("an element with nothing declared in it")
    element.check()
    if passed is not None and not isinstance(element, Resource):
        passed.add(element)


def conforms(element: Element, passed: set[Element] | None = None) -> bool:
    """Does a decoded element meet every rule FHIR R4 sets for what is declared of it (the patterns
    of its primitive types, real dates, non-empty arrays, one value per choice element, required
    choices)? Only then is it read as decoded; else `fhir.resources` reads it (parse.py).

    `passed`, when given, holds the elements already found conforming (one call's: a record repeats
    the same statuses, categories, codings and subject), so each distinct one is checked once; the
    ones found conforming here are added to it."""
    try:
        _check(element, passed)
    except ValueError:
        return False
    return True
