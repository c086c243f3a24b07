"""Reading a request body safely: a size limit, JSON parsing, a nesting-depth limit.

Too large -> 413; not JSON, not an object, or nested deeper than the limit -> 400 (the JSON decoder
itself refuses about 1,000 levels). Nothing here can
hang on a slow or endless body beyond the server's own timeouts: we stop reading at the limit.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from fastapi import Request

from cds_service.jsonlimits import nested_deeper_than
from cds_service.protocol.errors import CdsError


async def read_limited_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise _too_large(max_bytes)
        except ValueError:
            raise CdsError(400, "invalid_request", "Content-Length is not a number.") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> CdsError:
    return CdsError(413, "payload_too_large", f"The request body is larger than {max_bytes} bytes.")


_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUES_BY_KEY = msgspec.json.Decoder(dict[str, msgspec.Raw])


def parse_json_object(
    body: bytes, max_depth: int, checked_later: frozenset[tuple[str, ...]] = frozenset()
) -> dict[str, Any]:
    """The body as a JSON object, or a 400.

    Members at the paths in `checked_later` (a large `prefetch`, the draft orders) are not walked
    for depth here: the data layer reads only what it declares, and checks the depth of anything it
    reads otherwise. A top-level one (the `prefetch`) is not even decoded: an object member stays an
    object of undecoded values (`msgspec.Raw`), each decoded by the data layer when, and only if, it
    reads that key (fhir/decode.py), into the elements it reads. Decoding thousands of resources
    into dicts first would cost more than the rest of the call."""
    if not body.strip():
        raise CdsError(400, "invalid_json", "The request body is empty; a JSON object is expected.")
    try:
        members = _MEMBERS.decode(body)
    except msgspec.ValidationError:
        raise CdsError(400, "invalid_request", "The request body must be a JSON object.") from None
    except msgspec.DecodeError:
        raise CdsError(400, "invalid_json", "The request body is not valid JSON.") from None
    except RecursionError:  # past ~1,000 levels somewhere: parsed whole, as JSON data
        return _parsed_whole(body, max_depth, checked_later)
    undecoded = {path[0] for path in checked_later if len(path) == 1}
    value: dict[str, Any] = {}
    for name, raw in members.items():
        try:
            value[name] = _undecoded_object(raw) if name in undecoded else msgspec.json.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # e.g. a number out of range
            raise CdsError(400, "invalid_json", "The request body is not valid JSON.") from None
    envelope = _without({k: v for k, v in value.items() if k not in undecoded}, checked_later)
    if nested_deeper_than(envelope, max_depth):
        raise CdsError(400, "too_deeply_nested", f"The request body is nested deeper than {max_depth} levels.")
    return value


def _parsed_whole(body: bytes, max_depth: int, checked_later: frozenset[tuple[str, ...]]) -> dict[str, Any]:
    """A body nested too deeply for the undecoded reading (which stops near Python's recursion limit)
    but not for orjson (1,024 levels): decoded into JSON data, the prefetch included; the data layer
    reads parsed values too, and skips a resource nested too deeply."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CdsError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise CdsError(400, "invalid_request", "The request body must be a JSON object.")
    if nested_deeper_than(_without(value, checked_later), max_depth):
        raise CdsError(400, "too_deeply_nested", f"The request body is nested deeper than {max_depth} levels.")
    return value


def _without(value: dict[str, Any], paths: frozenset[tuple[str, ...]]) -> dict[str, Any]:
    """A shallow copy of `value` without the members at `paths` (copied only along the paths)."""
    out = dict(value)
    for path in paths:
        node = out
        for i, key in enumerate(path):
            if not isinstance(node, dict) or key not in node:
                break
            if i == len(path) - 1:
                del node[key]
            else:
                node[key] = node = dict(node[key]) if isinstance(node[key], dict) else node[key]
    return out


def _undecoded_object(raw: msgspec.Raw) -> Any:
    """An object as {key: undecoded value}; anything else decoded (the request model then refuses it)."""
    try:
        return _VALUES_BY_KEY.decode(raw)
    except msgspec.ValidationError:
        return msgspec.json.decode(raw)
