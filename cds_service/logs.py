"""Structured (JSON) logs without patient data.

One JSON object per line. Only whitelisted fields are written: a log call passes them in `extra`
(e.g. `hookInstance`, `service`, `outcome`, `cards`, `duration_ms`) and the message must never carry
patient identifiers, resource content or tokens; modules log counts and reason codes instead.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

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
        return json.dumps(entry, default=str)


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
