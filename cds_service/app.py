"""The ASGI application: `uvicorn cds_service.app:app`, or `create_app()` in tests.

`create_app()` is the one place the app is assembled: it builds the typed `Runtime` (settings,
services, resources to open and close) and hands FastAPI its one lifespan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI

from cds_service import __version__, observability
from cds_service.cards import orders
from cds_service.cards.content import load_card_content, load_guidance_content
from cds_service.clinical import valuesets
from cds_service.clinical.facts import RuleSettings
from cds_service.feedback.routes import router as feedback_router
from cds_service.fhir.client import FhirSearchClient
from cds_service.fhir.source import MissingDataFetcher, NoFhirServerFetcher
from cds_service.guidance.routes import guidance_router
from cds_service.logs import configure_logging
from cds_service.protocol.client_io import BodyReadDeadline, install_client_disconnect_handler
from cds_service.protocol.docs import install_offline_docs
from cds_service.protocol.errors import install_error_handlers
from cds_service.protocol.http_security import install_http_security
from cds_service.protocol.load_shedding import LoadShedding
from cds_service.protocol.openapi import install_openapi
from cds_service.protocol.routes import router as hook_router
from cds_service.protocol.service import ServiceRegistry
from cds_service.report.routes import router as report_router
from cds_service.runtime import Runtime
from cds_service.security import AuthSettings, install_client_auth
from cds_service.security.replay_shared import close_replay_cache, replay_cache_from_settings
from cds_service.services.card_memory import CardMemory
from cds_service.services.deps import ServiceDeps
from cds_service.services.ms_back_pain import MsBackPainPatientView
from cds_service.services.ms_back_pain_orders import MsBackPainOrderSelect, MsBackPainOrderSign
from cds_service.settings import Settings, load_settings
from cds_service.storage.settings import StorageSettings


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    settings: Settings | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    fetcher: MissingDataFetcher | None = None,
    auth: AuthSettings | None = None,
    install_auth: bool = True,
    storage: StorageSettings | None = None,
) -> FastAPI:
    """Build the app. Tests pass a fixed `clock`, their own `fetcher`, and `auth` settings.

    Client authentication (CDS Hooks JWTs) is required unless `auth` (or CDS_AUTH_MODE=disabled in
    the environment) says otherwise; `install_auth=False` leaves it to the caller.
    """
    settings = settings or load_settings(Settings)
    auth = auth or load_settings(AuthSettings)
    configure_logging(settings.log_level)
    valuesets.warm_up()
    orders.warm_up()
    closers: list[Callable[[], Awaitable[None]]] = []
    if fetcher is None and settings.fhir_server_allowlist:
        # One client per process: connections to the EHR are reused across calls.
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.fhir_deadline_seconds), limits=httpx.Limits(max_connections=50)
        )
        closers.append(http.aclose)
        fetcher = FhirSearchClient(
            http,
            settings.fhir_server_allowlist,
            settings.fhir_deadline_seconds,
            settings.fhir_max_resources,
            max_page_bytes=settings.fhir_max_page_bytes,
        )

    runtime: Runtime
    memory = CardMemory(lambda: runtime.storage, linger=settings.card_write_linger_ms / 1000)
    deps = ServiceDeps(
        fetcher=fetcher or NoFhirServerFetcher(),
        clock=clock,
        card_content=load_card_content(settings.cards_dir),  # checked against its schema: a mistake stops here
        rules=RuleSettings(settings.lookback_days, settings.recent_mri_days, settings.nsaid_trial_days),
        smart_app=(settings.smart_app_label, settings.smart_app_url) if settings.smart_app_url else None,
        memory=memory,
        public_base_url=auth.public_base_url,
    )
    registry = ServiceRegistry([MsBackPainPatientView(deps), MsBackPainOrderSelect(deps), MsBackPainOrderSign(deps)])
    runtime = Runtime(settings=settings, registry=registry, card_memory=memory, storage_settings=storage)
    for closer in closers:
        runtime.close_at_shutdown(closer)
    # Shared by every replica: Redis when configured, else the database (looked up once it is open).
    replay_cache = replay_cache_from_settings(
        settings.redis_url.get_secret_value() if settings.redis_url else None,
        runtime.current_storage,
        key_prefix=settings.redis_key_prefix,
        timeout_seconds=settings.redis_timeout_seconds,
    )
    runtime.replay_cache = replay_cache

    async def close_replay() -> None:
        await close_replay_cache(replay_cache)

    runtime.close_at_shutdown(close_replay)

    app = FastAPI(
        title="MS back pain CDS Hooks service",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=runtime.lifespan,
    )
    app.state.runtime = runtime
    install_offline_docs(app)
    install_openapi(app)
    install_error_handlers(app)
    install_client_disconnect_handler(app)
    app.include_router(hook_router)
    app.include_router(feedback_router)
    app.include_router(observability.router)
    app.include_router(guidance_router(load_guidance_content(settings.cards_dir), deps.card_content))
    app.include_router(report_router)  # 404 unless CDS_ADMIN_TOKEN is set
    app.add_middleware(BodyReadDeadline, timeout=settings.body_read_timeout_seconds)
    if install_auth:
        install_client_auth(app, auth, replay_cache=replay_cache)
    # Outside authentication: an overloaded worker refuses at once, before verifying any token.
    app.add_middleware(
        LoadShedding, max_in_flight=settings.max_in_flight_calls, retry_after_seconds=settings.shed_retry_after_seconds
    )
    install_http_security(app, settings.cors_allow_origins)
    return app


app = create_app()
