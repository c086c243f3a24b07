"""Connections that never send a complete request, and what the accept loop logs when the process is
out of file descriptors.

* `BoundedH11Protocol`: uvicorn's h11 protocol with a header-read timeout. uvicorn closes a
  keep-alive connection that stays idle after a response (`timeout_keep_alive`), but a fresh
  connection that sends nothing, or a request line and half its headers, is held forever: 1,100
  such connections made the service unreachable. Here every connection must deliver a complete
  request head within `header_read_timeout` seconds of being opened (or of its previous response),
  or it is closed. Header size is bounded by h11 (`h11_max_incomplete_event_size`, set by cli.py).
  The body is bounded by `client_io.BodyReadDeadline`.
* `install_loop_error_filter()`: when `accept()` fails for lack of file descriptors, asyncio logs
  the error with a full traceback and retries every 100 ms: 74 MB of tracebacks in one incident.
  This turns them into one WARNING line per interval, with a count, and no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from cds_service.metrics import CLIENT_ABORTS

log = logging.getLogger("cds_service.server")

DEFAULT_HEADER_READ_TIMEOUT_SECONDS = 10.0
ACCEPT_ERROR_LOG_INTERVAL_SECONDS = 10.0


class BoundedH11Protocol(H11Protocol):
    """uvicorn's `H11Protocol` plus a deadline for each request head (see the module docstring).

    The timeout is read from `config.header_read_timeout` (cli.ServeConfig); uvicorn builds one
    protocol object per connection with the config, in every worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout: float = getattr(self.config, "header_read_timeout", DEFAULT_HEADER_READ_TIMEOUT_SECONDS)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a complete request head arrived: its body has its own deadline
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        self._arm_header_timer()  # the next request's head (a pipelined one is parsed just below)
        super().on_response_complete()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            CLIENT_ABORTS.labels("header_timeout").inc()
            log.debug("connection closed: no complete request head in time", extra={"event": "header_timeout"})
            self.transport.close()


class _AcceptErrorFilter:
    """A loop exception handler: accept() failures summarised, everything else passed on."""

    def __init__(self, previous: Any):
        self._previous = previous
        self._count = 0
        self._last_log = -ACCEPT_ERROR_LOG_INTERVAL_SECONDS

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith("socket.accept() out of system resource"):
            self._count += 1
            now = time.monotonic()
            if now - self._last_log >= ACCEPT_ERROR_LOG_INTERVAL_SECONDS:
                exc = context.get("exception")
                log.warning(
                    "accept() failing: out of file descriptors (too many open connections)",
                    extra={
                        "event": "accept_failed",
                        "reason": type(exc).__name__ if exc else "unknown",
                        "count": self._count,
                    },
                )
                self._count, self._last_log = 0, now
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


def install_loop_error_filter(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Summarise accept() failures on `loop` (the running loop by default). Idempotent."""
    loop = loop or asyncio.get_running_loop()
    current = loop.get_exception_handler()
    if isinstance(current, _AcceptErrorFilter):
        return
    loop.set_exception_handler(_AcceptErrorFilter(current))
