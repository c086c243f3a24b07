"""Load shedding: a bound on the CDS calls one worker has in flight.

A worker runs one event loop on one core. Past a few dozen calls in flight each one only waits
longer for the same core: at 128 connections the median call took 9.4 s, far beyond an EHR's
time budget (~0.5-1 s), so every call failed late. Above `max_in_flight` calls the next one is
answered at once with 503 `{"error": "overloaded", ...}` and `Retry-After`, before its body is read
or its token verified: the EHR can try another replica or show its own default, and the calls in
flight finish within budget.

Counted: hook calls, `POST /cds-services/{id}`. Feedback is not shed: it is small, bounded by the
database timeouts, and an EHR may not send it again. Discovery, health, readiness and metrics are
never shed (they are cheap, and a probe must see the truth). The limit is per worker process
(CDS_MAX_IN_FLIGHT_CALLS); with N workers a pod takes N times as many.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from cds_service.metrics import SHED

log = logging.getLogger("cds_service.calls")

SERVICES_PREFIX = "/cds-services/"
OVERLOADED_BODY = orjson.dumps(
    {"error": "overloaded", "message": "The service has too many calls in progress; send the call again shortly."}
)
LOG_INTERVAL_SECONDS = 10.0


class LoadShedding:
    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_seconds: int = 1):
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_seconds).encode()
        self.in_flight = 0
        self._shed_since_log = 0
        self._last_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not _is_hook_call(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._shed(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _shed(self, scope: Scope, send: Send) -> None:
        SHED.labels("hook").inc()
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_SECONDS:  # one line per interval, however many are shed
            log.warning(
                "overloaded: calls answered 503",
                extra={"event": "load_shed", "status": 503, "count": self._shed_since_log},
            )
            self._shed_since_log, self._last_log = 0, now
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(OVERLOADED_BODY)).encode()),
            (b"retry-after", self.retry_after),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": OVERLOADED_BODY})


def _is_hook_call(scope: Scope) -> bool:
    """`/cds-services/{id}` (not `/cds-services/{id}/feedback`), under the root path if any."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    if not path.startswith(SERVICES_PREFIX):
        return False
    service_id = path[len(SERVICES_PREFIX) :]
    return bool(service_id) and "/" not in service_id.rstrip("/")
