"""Reading a request body safely: a size limit, JSON parsing, a nesting-depth limit.

Too large -> 413; not JSON, not an object, or nested deeper than the limit -> 400 (orjson itself
refuses more than 1024 levels). Nothing here can
hang on a slow or endless body beyond the server's own timeouts: we stop reading at the limit.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from cds_service.gcpause import gc_paused
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


def parse_json_object(
    body: bytes, max_depth: int, checked_later: frozenset[tuple[str, ...]] = frozenset()
) -> dict[str, Any]:
    """The body as a JSON object, or a 400.

    Members at the paths in `checked_later` (a large `prefetch`, the draft orders) are not walked
    here: the data layer checks the depth of each resource it reads and skips those nested too
    deeply, and never reads the others; walking thousands of resources twice would cost more than
    the rest of the call."""
    if not body.strip():
        raise CdsError(400, "invalid_json", "The request body is empty; a JSON object is expected.")
    try:
        with gc_paused():
            value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CdsError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise CdsError(400, "invalid_request", "The request body must be a JSON object.")
    envelope = _without(value, checked_later) if checked_later else value
    if nested_deeper_than(envelope, max_depth):
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
