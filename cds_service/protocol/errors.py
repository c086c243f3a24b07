"""Error answers: every failure is JSON (`ErrorBody`) with a stable `error` code."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_service.protocol.models import ErrorBody

log = logging.getLogger(__name__)


class CdsError(Exception):
    """An error answer the protocol layer turns into JSON."""

    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Where and why validation failed, without echoing input values (they may hold PHI)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "invalid"), "type": e.get("type", "")}
        for e in exc.errors(include_input=False, include_url=False, include_context=False)
    ][:20]


def error_response(
    status: int,
    error: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def unknown_service() -> CdsError:
    """404 for a service id this server does not offer. The id is not echoed: a path may carry PHI."""
    return CdsError(404, "unknown_service", "No CDS service with this id; GET /cds-services lists them.")


_HTTP_ERROR_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
# Messages of our own for the HTTP errors Starlette raises (its `detail` is not checked for input).
_HTTP_ERROR_MESSAGES = {
    404: "No such resource on this server.",
    405: "This method is not allowed here; the Allow header lists those that are.",
}
# The response headers an HTTP error may carry on (405's Allow); nothing else is copied from it.
_HTTP_ERROR_HEADERS = frozenset({"allow", "retry-after", "www-authenticate"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CdsError)
    async def _cds_error(_: Request, exc: CdsError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in _HTTP_ERROR_HEADERS}
        message = _HTTP_ERROR_MESSAGES.get(exc.status_code) or HTTPStatus(exc.status_code).phrase
        return error_response(
            exc.status_code, _HTTP_ERROR_CODES.get(exc.status_code, "http_error"), message, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI would answer 422 with the input echoed; CDS clients get the service's 400 shape.
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "invalid")), "type": e.get("type", "")}
            for e in exc.errors()
        ][:20]
        return error_response(400, "invalid_request", "The request is not valid.", details)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", extra={"event": "unexpected_error", "error_type": type(exc).__name__})
        return error_response(500, "internal_error", "The service failed to process this call.")
