"""`GET /admin/report` (the HTML page) and `GET /admin/report.json` (the same figures): off unless
CDS_ADMIN_TOKEN is set (see `admin_auth.py`). Query: `since` ("30d", "8w", a date; default 30d),
`until` (a date, included, or a date-time; default now)."""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from cds_service.cards.content import load_card_content
from cds_service.protocol.dependencies import SettingsDep, StorageDep
from cds_service.protocol.errors import error_response
from cds_service.report.admin_auth import admin_denial
from cds_service.report.build import build_report
from cds_service.report.html import CONTENT_SECURITY_POLICY, render_html
from cds_service.report.period import PeriodError, parse_period
from cds_service.report.publish import PublicReport, offered_reasons, publish
from cds_service.settings import Settings
from cds_service.storage.db import Storage

log = logging.getLogger("cds_service.report")

router = APIRouter()


async def _report(
    request: Request, settings: Settings, storage: Storage | None, since: str, until: str | None
) -> PublicReport | Response:
    denied = admin_denial(request, settings)
    if denied is not None:
        return denied
    try:
        period = parse_period(since, until, dt.datetime.now(dt.UTC))
    except PeriodError as exc:
        return error_response(400, "invalid_period", str(exc))
    if storage is None:
        return error_response(503, "storage_unavailable", "The database is not available at the moment.")
    try:
        stats = await build_report(storage, period)
    except (DBAPIError, PoolTimeoutError, OSError) as exc:
        log.error("report failed", extra={"event": "report", "error_type": type(exc).__name__, "status": 503})
        return error_response(503, "storage_unavailable", "The database is not available at the moment.")
    return publish(stats, offered_reasons(load_card_content(settings.cards_dir)))


@router.get("/admin/report", response_model=None)
async def report_page(
    request: Request, settings: SettingsDep, storage: StorageDep, since: str = "30d", until: str | None = None
) -> Response:
    report = await _report(request, settings, storage, since, until)
    if isinstance(report, Response):
        return report
    return HTMLResponse(render_html(report), headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/admin/report.json", response_model=None)
async def report_json(
    request: Request, settings: SettingsDep, storage: StorageDep, since: str = "30d", until: str | None = None
) -> Response:
    report = await _report(request, settings, storage, since, until)
    if isinstance(report, Response):
        return report
    return JSONResponse(report.to_json())
