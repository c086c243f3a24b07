"""Structured (JSON) logs without patient data.

One JSON object per line. Only whitelisted fields are written: a log call passes them in `extra`
(e.g. `hookInstance`, `service`, `outcome`, `cards`, `duration_ms`) and the message must never carry
patient identifiers, resource content or tokens; modules log counts and reason codes instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

FIELDS = (
    "event",
    "hookInstance",
    "service",
    "hook",
    "outcome",
    "status",
    "cards",
    "indicators",
    "duration_ms",
    "reason",
    "count",
    "method",
    "error_type",
    "received",
    "stored",
    "duplicates",
    "unknown_cards",
    "issuer",
    "kid",
    "jwks",
    "database",
    "days",
    "services",
    "searches",
    "reasons",
    "missing_optional",
    "stood_in",
)
_HANDLER_NAME = "cds-json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__  # the type only: messages may quote data
        return orjson.dumps(entry, default=str).decode()


# What the layers below a hook call add to its one log line (e.g. the optional prefetch keys it was
# decided without): one line per call, not one per layer.
_CALL_FIELDS: ContextVar[dict[str, object] | None] = ContextVar("cds_call_log_fields", default=None)


@contextmanager
def call_log_fields() -> Iterator[dict[str, object]]:
    """Collect, for the duration of one hook call, the fields `add_call_log_fields` adds."""
    fields: dict[str, object] = {}
    token = _CALL_FIELDS.set(fields)
    try:
        yield fields
    finally:
        _CALL_FIELDS.reset(token)


def add_call_log_fields(**fields: object) -> None:
    """Add fields (names from FIELDS: no PHI) to the current hook call's log line; outside a call
    (a test of one layer) they are dropped."""
    current = _CALL_FIELDS.get()
    if current is not None:
        current.update(fields)


# Libraries that log request URLs at INFO: a FHIR search URL names the patient (`?patient=<id>`).
QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the service's loggers (idempotent: safe to call per app)."""
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logger = logging.getLogger("cds_service")
    logger.setLevel(level.upper())
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = True
