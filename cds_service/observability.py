"""Health, readiness and Prometheus metrics. No patient data in any label: services, outcomes,
indicators and failure kinds only.

With several worker processes, set PROMETHEUS_MULTIPROC_DIR (an empty, writable folder) so that
`/metrics` adds up every worker of the pod (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

import orjson
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from sqlalchemy import text

from cds_service.clinical import valuesets
from cds_service.protocol.dependencies import StorageDep

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CALLS = Counter("cds_calls_total", "CDS service calls", ["service", "status"])
CALL_SECONDS = Histogram(
    "cds_call_duration_seconds", "CDS service call latency", ["service", "status"], buckets=_LATENCY_BUCKETS
)
CARDS = Counter("cds_cards_total", "Cards returned", ["service", "indicator"])
FHIR_READS = Counter("cds_fhir_reads_total", "Reads from EHR FHIR servers", ["outcome"])
FHIR_READ_SECONDS = Histogram(
    "cds_fhir_read_duration_seconds", "FHIR read latency", ["outcome"], buckets=_LATENCY_BUCKETS
)
FEEDBACK = Counter("cds_feedback_total", "Feedback entries received", ["service", "outcome"])

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(storage: StorageDep) -> Response:
    """Ready for traffic: value sets loaded and the database reachable."""
    checks: dict[str, str] = {"valueSets": "ok" if valuesets.concepts.cache_info().currsize else "not loaded"}
    if storage is None:
        checks["database"] = "not open"
    else:
        try:
            async with storage.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unreachable ({type(exc).__name__})"
    ready = all(v == "ok" for v in checks.values())
    return Response(
        orjson.dumps({"status": "ready" if ready else "not ready", "checks": checks}),
        status_code=200 if ready else 503,
        media_type="application/json",
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
