"""The OpenAPI document (`/openapi.json`, shown by `/docs`): the HTTP contract as EHR integrators meet it.

The hook and feedback routes read their bodies themselves (size and depth limits before any
parsing, then pydantic), so FastAPI cannot infer the request bodies, and it would document a 422
the service never sends. This module describes them from the same pydantic models the routes
validate with: the hook request with the context of each hook, the cards answered, the feedback
body, and the one error shape (`ErrorBody`) with the statuses each route really answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from cds_service.feedback.models import FeedbackRequest
from cds_service.protocol.models import (
    CdsRequest,
    CdsResponse,
    ErrorBody,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
)

REF = "#/components/schemas/{model}"

_ERRORS = {
    "400": "Not a valid request (invalid_json, invalid_request, invalid_context, wrong_hook, too_deeply_nested).",
    "401": "Client authentication failed: no valid CDS Hooks JWT from a trusted client (unauthorized).",
    "403": "The prefetch is incomplete and the request's fhirServer is not on the allow-list "
    "(fhir_server_not_allowed).",
    "404": "No CDS service with this id (unknown_service).",
    "405": "Method not allowed; the Allow header lists the methods (method_not_allowed).",
    "412": "Data the service needs was neither prefetched nor readable from the FHIR server (precondition_failed); "
    "`details` names each prefetch key and why.",
    "413": "The body is larger than CDS_MAX_BODY_BYTES (payload_too_large).",
    "503": "The service cannot answer now (a dependency it needs is down, or it is at its concurrency limit); "
    "try again after the Retry-After header's seconds.",
}
_HOOK_CALL_ERRORS = ("400", "401", "403", "404", "405", "412", "413", "503")
_FEEDBACK_ERRORS = ("400", "401", "404", "405", "413", "503")


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """JSON Schemas of `models` and everything they refer to, keyed by component name."""
    components: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(statuses: tuple[str, ...]) -> dict[str, Any]:
    return {status: _json(_ref(ErrorBody), _ERRORS[status]) for status in statuses}


def _hook_request_schema() -> dict[str, Any]:
    contexts = [_ref(PatientViewContext), _ref(OrderSelectContext), _ref(OrderSignContext)]
    return {
        "allOf": [_ref(CdsRequest)],
        "properties": {"context": {"oneOf": contexts, "description": "The context of the service's hook."}},
    }


def describe(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of `app`, with the hook call and feedback described."""
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(
        _schemas(
            CdsRequest,
            CdsResponse,
            ErrorBody,
            FeedbackRequest,
            PatientViewContext,
            OrderSignContext,
            OrderSelectContext,
        )
    )
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    paths = document.get("paths", {})
    for path_item in paths.values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    call = paths.get("/cds-services/{service_id}", {}).get("post")
    if call is not None:
        call["summary"] = "Call a CDS service (CDS Hooks 2.0)"
        call["description"] = (
            "The EHR's hook call: `hook` must be the service's hook; `context` is that hook's context; "
            "`prefetch` holds the data the discovery document asks for (missing keys are read from "
            "`fhirServer` when it is allow-listed). Requires `Authorization: Bearer <CDS Hooks JWT>` unless "
            "authentication is disabled."
        )
        call["requestBody"] = {"required": True, "content": {"application/json": {"schema": _hook_request_schema()}}}
        call["responses"] = {"200": _json(_ref(CdsResponse), "Cards (possibly none)."), **_errors(_HOOK_CALL_ERRORS)}
    feedback = paths.get("/cds-services/{service_id}/feedback", {}).get("post")
    if feedback is not None:
        feedback["summary"] = "Feedback on cards (CDS Hooks 2.0)"
        feedback["description"] = (
            "What the clinician did with each card: accepted (with the suggestions) or overridden."
        )
        feedback["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(FeedbackRequest)}}}
        feedback["responses"] = {
            "200": _json({"type": "object", "maxProperties": 0}, "Recorded (idempotent on resubmission)."),
            **_errors(_FEEDBACK_ERRORS),
        }
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve `describe(app)` at `/openapi.json` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
