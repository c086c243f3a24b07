"""Decoding derived from the reading contract (`schema.py`): JSON -> typed Structs in one pass.

A prefetch value arrives either as undecoded JSON (`msgspec.Raw`, a slice of the request body: see
protocol/body.py) or as parsed JSON (a dict, from the FHIR server or a test). Either way it is
decoded in one pass into a typed `Bundle` / resource, reading only the declared elements and
skipping everything else unread.

A value that does not fit the declarations as a whole (a resource of an undeclared type in a
Bundle, a code sent as a number ...) is decoded generically instead, and then each resource on its
own: under its declaration when it fits, else by `fhir.resources` (parse.py, which repairs what is
safe to repair and skips what is unreadable). One unreadable resource never costs the others. The
same holds for a resource that decodes but does not conform (`schema.conforms`: a bad date, a
second value of a choice element ...).
"""

from __future__ import annotations

from typing import Any

import msgspec

from cds_service.fhir.parse import stringify_numbers
from cds_service.fhir.schema import AnyResource, PrefetchValue, Resource, conforms
from cds_service.jsonlimits import nested_deeper_than

_VALUE_DECODER = msgspec.json.Decoder(PrefetchValue)
# A lone surrogate in a parsed string makes msgspec raise UnicodeEncodeError: declined like the rest.
_DECLINED = (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeError)


def is_raw(value: Any) -> bool:
    return isinstance(value, msgspec.Raw)


def raw_kind(value: msgspec.Raw) -> str:
    """The first character of undecoded JSON: '{' for an object, 'n' for null ..."""
    return memoryview(value)[:1].tobytes().decode("ascii", "replace")


def typed_value(value: Any) -> Resource | None:
    """A prefetch value (undecoded JSON or parsed JSON) as a typed Bundle or resource, or None when
    it does not fit the declarations as a whole."""
    try:
        if isinstance(value, msgspec.Raw):
            decoded: Resource = _VALUE_DECODER.decode(value)
        else:
            decoded = msgspec.convert(value, PrefetchValue)
    except _DECLINED:
        return None
    return decoded


class UnreadableJson(ValueError):
    """Undecoded JSON that holds what Python cannot read (a number out of range)."""


def builtin_value(value: Any) -> Any:
    """A prefetch value as plain JSON data (dicts and lists): for values `typed_value` declined."""
    if isinstance(value, msgspec.Raw):
        try:
            return msgspec.json.decode(value)
        except _DECLINED:
            raise UnreadableJson("a prefetch value holds JSON that cannot be read") from None
    return value


def decoded_resource(raw: dict[str, Any]) -> Resource | None:
    """One parsed resource decoded under its type's declaration (not yet checked for conformance),
    or None (an undeclared type, or JSON types that do not fit). Codes and ids sent as JSON numbers
    are read as their exact string, the first repair fhir.resources' reader makes too (parse.py)."""
    resource = _converted(raw)
    if resource is None and not nested_deeper_than(raw):  # (stringify_numbers recurses)
        resource = _converted(stringify_numbers(raw))
    return resource


def _converted(raw: dict[str, Any]) -> Resource | None:
    try:
        resource: Resource = msgspec.convert(raw, AnyResource)
    except _DECLINED:
        return None
    return resource


def typed_resource(raw: dict[str, Any]) -> Resource | None:
    """One parsed resource as the typed reader reads it, or None when it leaves it to fhir.resources."""
    resource = decoded_resource(raw)
    return resource if resource is not None and conforms(resource) else None
