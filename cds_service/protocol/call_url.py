"""The base URL the current service call came in on (scheme, host and root path), for a service that
links back to a page of its own while no public base URL is configured. Set by the route for the
duration of one call; None outside a call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CALL_BASE_URL: ContextVar[str | None] = ContextVar("cds_call_base_url", default=None)


@contextmanager
def call_base_url_set(base_url: str) -> Iterator[None]:
    token = _CALL_BASE_URL.set(base_url.rstrip("/"))
    try:
        yield
    finally:
        _CALL_BASE_URL.reset(token)


def call_base_url() -> str | None:
    return _CALL_BASE_URL.get()
