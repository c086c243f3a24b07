"""A nesting-depth test for parsed JSON, without recursion (so it cannot itself overflow the stack)."""

from __future__ import annotations

from typing import Any

# FHIR resources and CDS Hooks envelopes nest a dozen levels at most; 64 leaves a wide margin.
MAX_DEPTH = 64


def nested_deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True as soon as `value` is found to nest more than `limit` containers deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False
