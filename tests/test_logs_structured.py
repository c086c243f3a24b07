"""Every log call of the service is structured: a constant message, an `event`, and only fields the
JSON formatter writes (`logs.FIELDS`); values never go into the message (they could quote data)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cds_service.logs import FIELDS

PACKAGE = Path(__file__).resolve().parents[1] / "cds_service"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def log_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("log", "logger")
            ):
                calls.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node))
    return calls


CALLS = log_calls()


def test_there_are_log_calls_to_check() -> None:
    assert len(CALLS) > 20


@pytest.mark.parametrize(("where", "call"), CALLS, ids=[where for where, _ in CALLS])
def test_the_log_call_is_structured(where: str, call: ast.Call) -> None:
    assert len(call.args) == 1, "values go in extra=, not in the message"
    (extra,) = [k.value for k in call.keywords if k.arg == "extra"] or [None]
    assert isinstance(extra, ast.Dict), "extra={...} with an event"
    keys = [k.value for k in extra.keys if isinstance(k, ast.Constant)]
    assert "event" in keys
    assert set(keys) <= set(FIELDS), f"fields the formatter drops: {set(keys) - set(FIELDS)}"


def test_fields_added_to_a_call_line_are_fields_the_formatter_writes() -> None:
    """`add_call_log_fields(name=...)`: a name the formatter does not write would be dropped silently."""
    added = [
        (f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", keyword.arg)
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "add_call_log_fields"
        for keyword in node.keywords
    ]
    assert added, "the services add fields to their call's line"
    assert [(where, name) for where, name in added if name not in FIELDS] == []
