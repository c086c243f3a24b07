"""Wiring client authentication into the app: `install_client_auth(app, settings, http)`.

A pure ASGI middleware, outside routing, so an unauthenticated call is refused before its body is
read. Protected: every request under `/cds-services/{id}` (the service call, `/feedback`, and any
other sub-path), except CORS pre-flight `OPTIONS`. Open: discovery (`GET /cds-services`) and
everything outside `/cds-services/`.

The expected `aud` is `{base}/cds-services/{id}`, where `base` is `public_base_url` or, when that
is unset, the request's own base URL (scheme + Host header + root path). For feedback the service
URL is expected (CDS Hooks: the aud is the service endpoint); the feedback URL is accepted too.

Every refusal is the same 401: `{"error": "unauthorized", "message": "Client authentication
failed."}` with `WWW-Authenticate: Bearer`. The reason is logged and counted
(`cds_auth_refusals_total{status="401", reason=...}`, a fixed code), never sent.

When the shared replay store (Redis, or the database table) cannot answer, a valid token can be
neither accepted (it might be a replay) nor refused (the client did nothing wrong): the answer is
503 `{"error": "replay_store_unavailable", ...}` with `Retry-After`, so the EHR tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cds_service.metrics import AUTH_REFUSALS
from cds_service.runtime import runtime_of
from cds_service.security.jwks import JwksKeyStore
from cds_service.security.jwt_auth import AuthenticationFailed, ClientAuthenticator
from cds_service.security.replay import InMemoryReplayCache, ReplayCache, ReplayStoreUnavailable
from cds_service.security.settings import AuthSettings

log = logging.getLogger("cds_service.security")

SERVICES_PREFIX = "/cds-services/"
UNAUTHORIZED_BODY = {"error": "unauthorized", "message": "Client authentication failed."}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}
REPLAY_STORE_UNAVAILABLE_BODY = {
    "error": "replay_store_unavailable",
    "message": "Client authentication cannot be completed at the moment; send the call again shortly.",
}
RETRY_AFTER_SECONDS = 1


def unauthorized_response() -> JSONResponse:
    return JSONResponse(UNAUTHORIZED_BODY, status_code=401, headers=UNAUTHORIZED_HEADERS)


def replay_store_unavailable_response() -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    return JSONResponse(REPLAY_STORE_UNAVAILABLE_BODY, status_code=503, headers=headers)


def expected_audiences(scope: Scope, public_base_url: str | None) -> list[str] | None:
    """The `aud` values accepted for this request, or None when the request needs no client token."""
    if scope.get("method") == "OPTIONS":
        return None
    path = _route_path(scope)
    if not path.startswith(SERVICES_PREFIX) or path == SERVICES_PREFIX:
        return None
    base = public_base_url or str(Request(scope).base_url).rstrip("/")
    segments = path[len(SERVICES_PREFIX) :].split("/")
    service_url = f"{base}{SERVICES_PREFIX}{segments[0]}"
    if len(segments) == 1:
        return [service_url]
    if len(segments) == 2 and segments[1] == "feedback":
        return [service_url, f"{service_url}/feedback"]
    return [f"{base}{path}"]


def _route_path(scope: Scope) -> str:
    """The path the router matches (Starlette's rule: without the root path, if it is a prefix)."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path != root_path and path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


class ClientAuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: ClientAuthenticator, public_base_url: str | None):
        self.app = app
        self.authenticator = authenticator
        self.public_base_url = public_base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        audiences = expected_audiences(scope, self.public_base_url)
        if audiences is None:
            await self.app(scope, receive, send)
            return
        values = Headers(scope=scope).getlist("authorization")
        try:
            if len(values) > 1:
                raise AuthenticationFailed("several_authorization_headers")
            identity = await self.authenticator.verify(values[0] if values else None, audiences)
        except AuthenticationFailed as exc:
            AUTH_REFUSALS.labels("401", exc.reason).inc()
            log.warning(
                "client authentication failed",
                extra={"event": "client_auth", "status": 401, "reason": exc.reason, "method": scope.get("method")},
            )
            await unauthorized_response()(scope, receive, send)
            return
        except ReplayStoreUnavailable:
            AUTH_REFUSALS.labels("503", "replay_store_unavailable").inc()
            log.warning(
                "client authentication: replay store unavailable",
                extra={"event": "client_auth", "reason": "replay_store_unavailable", "status": 503},
            )
            await replay_store_unavailable_response()(scope, receive, send)
            return
        log.debug("client authenticated", extra={"event": "client_auth", "issuer": identity.iss, "kid": identity.kid})
        scope.setdefault("state", {})["client_identity"] = identity  # request.state.client_identity
        await self.app(scope, receive, send)


def install_client_auth(
    app: FastAPI,
    settings: AuthSettings,
    http: httpx.AsyncClient | None = None,
    *,
    replay_cache: ReplayCache | None = None,
    clock: Callable[[], float] = time.time,
) -> ClientAuthenticator | None:
    """Protect the service calls of `app` (call it after building the app, before it starts).

    `http` fetches JWK Sets; when None and an issuer's keys are at a URL, a client is created here
    and closed at shutdown. `replay_cache` defaults to a per-process in-memory cache.
    """
    runtime = runtime_of(app)
    if runtime.client_auth_settings is not None:
        raise RuntimeError("client authentication is already installed on this app")
    runtime.client_auth_settings = settings
    if settings.mode == "disabled":
        log.warning(
            "client authentication is DISABLED: development only. "
            "Every CDS service call is accepted without a client JWT.",
            extra={"event": "client_auth_config", "reason": "disabled"},
        )
        return None

    needs_http = any(i.jwks_url or i.jku_allowlist for i in settings.trusted_issuers)
    if http is None and needs_http:
        http = httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False)
        runtime.close_at_shutdown(http.aclose)
    keys = JwksKeyStore(settings.trusted_issuers, http, settings.jwks_cache_seconds, clock)
    authenticator = ClientAuthenticator(settings, keys, replay_cache or InMemoryReplayCache(clock=clock), clock)
    runtime.client_authenticator = authenticator
    if not settings.trusted_issuers:
        log.error(
            "client authentication is required but no issuer is trusted: every CDS service call will be refused",
            extra={"event": "client_auth_config", "reason": "no_trusted_issuer"},
        )
    if settings.public_base_url is None:
        log.warning(
            "CDS_AUTH_PUBLIC_BASE_URL is not set: the expected JWT aud is taken from the request's Host header; "
            "set it in production",
            extra={"event": "client_auth_config", "reason": "no_public_base_url"},
        )
    app.add_middleware(ClientAuthMiddleware, authenticator=authenticator, public_base_url=settings.public_base_url)
    return authenticator
