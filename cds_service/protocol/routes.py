"""HTTP routes of CDS Hooks 2.0: discovery and service calls. Thin: parse, validate, delegate."""

from __future__ import annotations

import logging
import time

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from cds_service.fhir.source import DataUnavailable, ServerNotAllowed
from cds_service.logs import call_log_fields
from cds_service.observability import CALL_SECONDS, CALLS, CARDS
from cds_service.protocol.body import parse_json_object, read_limited_body
from cds_service.protocol.call_url import call_base_url_set
from cds_service.protocol.dependencies import RegistryDep, SettingsDep
from cds_service.protocol.errors import CdsError, error_response, unknown_service, validation_details
from cds_service.protocol.models import CdsRequest, DiscoveryResponse

log = logging.getLogger("cds_service.calls")

router = APIRouter()


def _log_call(request: CdsRequest, service_id: str, status: int, started: float, **fields: object) -> None:
    """One structured line and the metrics per call: no patient id, no resource content, no token."""
    elapsed = time.perf_counter() - started
    CALLS.labels(service_id, str(status)).inc()
    CALL_SECONDS.labels(service_id, str(status)).observe(elapsed)
    indicators = fields.get("indicators")
    for indicator in indicators if isinstance(indicators, list | tuple) else ():
        CARDS.labels(service_id, str(indicator)).inc()
    log.info(
        "cds call",
        extra={
            "event": "cds_call",
            "hookInstance": request.hookInstance[:64],
            "service": service_id,
            "hook": request.hook[:40],
            "outcome": "cards" if status == 200 else "error",
            "status": status,
            "duration_ms": round(elapsed * 1000, 1),
            **fields,
        },
    )


@router.get("/cds-services", response_model=DiscoveryResponse, response_model_exclude_none=True)
async def discovery(registry: RegistryDep) -> DiscoveryResponse:
    return DiscoveryResponse(services=registry.descriptors())


@router.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request, registry: RegistryDep, limits: SettingsDep) -> Response:
    started = time.perf_counter()
    service = registry.get(service_id)
    if service is None:
        raise unknown_service()
    body = parse_json_object(
        await read_limited_body(request, limits.max_body_bytes),
        limits.max_json_depth,
        checked_later=frozenset({("prefetch",), ("context", "draftOrders", "entry")}),
    )
    try:
        cds_request = CdsRequest.model_validate(body)
    except ValidationError as exc:
        raise CdsError(
            400, "invalid_request", "The request is not a valid CDS Hooks request.", validation_details(exc)
        ) from None
    if cds_request.hook != service.descriptor.hook:
        raise CdsError(  # the hook sent is not echoed: every error body is free of client input
            400, "wrong_hook", f"This service answers the {service.descriptor.hook!r} hook only."
        )
    try:
        context = service.context_model.model_validate(cds_request.context)
    except ValidationError as exc:
        details = [{**d, "loc": ["context", *d["loc"]]} for d in validation_details(exc)]
        raise CdsError(
            400, "invalid_context", f"The {service.descriptor.hook} context is not valid.", details
        ) from None

    try:
        with call_base_url_set(str(request.base_url)), call_log_fields() as noted:
            response = await service.handle(cds_request, context)
    except ServerNotAllowed:
        _log_call(cds_request, service_id, 403, started, reason="fhir_server_not_allowed")
        raise CdsError(
            403,
            "fhir_server_not_allowed",
            "Prefetch is incomplete and the request's fhirServer is not one this service may contact.",
        ) from None
    except DataUnavailable as exc:
        _log_call(cds_request, service_id, 412, started, reason="data_unavailable", count=len(exc.reasons))
        return error_response(
            412,
            "precondition_failed",
            "Data this service needs was not in the prefetch and could not be read from the FHIR server.",
            [{"prefetchKey": key, "reason": reason} for key, reason in exc.reasons.items()],
        )
    _log_call(
        cds_request,
        service_id,
        200,
        started,
        cards=len(response.cards),
        indicators=[c.indicator for c in response.cards],
        **noted,
    )
    return Response(orjson.dumps(response.model_dump(mode="json", exclude_none=True)), media_type="application/json")
