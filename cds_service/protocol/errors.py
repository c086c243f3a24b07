"""Error answers: every failure is JSON (`ErrorBody`) with a stable `error` code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
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


def error_response(status: int, error: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = ErrorBody(error=error, message=message, details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


_HTTP_ERROR_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CdsError)
    async def _cds_error(_: Request, exc: CdsError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, _HTTP_ERROR_CODES.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", type(exc).__name__, exc_info=False)
        return error_response(500, "internal_error", "The service failed to process this call.")
