"""Health, readiness and Prometheus metrics (defined in metrics.py). No patient data in any label:
services, outcomes, indicators and failure kinds only.

With several worker processes, set PROMETHEUS_MULTIPROC_DIR (an empty, writable folder) so that
`/metrics` adds up every worker of the pod (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

import orjson
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from sqlalchemy import text

from cds_service.clinical import valuesets
from cds_service.metrics import (  # re-exported: the metrics' historical home
    AUTH_REFUSALS,
    CALL_SECONDS,
    CALLS,
    CARDS,
    FEEDBACK,
    FHIR_READ_SECONDS,
    FHIR_READS,
    STORAGE_FALLBACKS,
)
from cds_service.protocol.dependencies import RuntimeDep
from cds_service.security.replay_shared import DatabaseReplayCache
from cds_service.storage.db import Storage, bounded

__all__ = [
    "AUTH_REFUSALS",
    "CALLS",
    "CALL_SECONDS",
    "CARDS",
    "FEEDBACK",
    "FHIR_READS",
    "FHIR_READ_SECONDS",
    "STORAGE_FALLBACKS",
    "router",
]

READINESS_DB_TIMEOUT_SECONDS = 1.0

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(runtime: RuntimeDep) -> Response:
    """Ready = can serve cards. 200 `ready`, 200 `degraded` (cards are served, but something optional
    is down: the database behind the alert-fatigue memory and feedback), or 503 `not ready` (value
    sets not loaded, the app not started, or client authentication required and its shared replay
    cache unreachable). Every check is bounded in time: a frozen dependency never holds the probe.
    """
    checks: dict[str, str] = {"valueSets": "ok" if valuesets.concepts.cache_info().currsize else "not loaded"}
    checks["database"] = await _database_state(runtime.storage)
    # The database is optional for cards, but `not open` means the app has not started (or is stopping).
    ready = checks["valueSets"] == "ok" and runtime.storage is not None
    replay = runtime.replay_cache
    if runtime.client_authenticator is not None and replay is not None:
        if isinstance(replay, DatabaseReplayCache):  # the database is then required after all
            checks["replayCache"] = checks["database"]
        else:
            check = getattr(replay, "check", None)
            checks["replayCache"] = await check() if check is not None else "ok"
        ready = ready and checks["replayCache"] == "ok"
    status = "not ready" if not ready else "ready" if all(v == "ok" for v in checks.values()) else "degraded"
    return Response(
        orjson.dumps({"status": status, "checks": checks}),
        status_code=200 if ready else 503,
        media_type="application/json",
    )


async def _database_state(storage: Storage | None) -> str:
    if storage is None:
        return "not open"

    async def select_one() -> None:
        async with storage.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await bounded(select_one, READINESS_DB_TIMEOUT_SECONDS)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return f"unreachable ({type(exc).__name__})"


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
