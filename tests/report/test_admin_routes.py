"""GET /admin/report and /admin/report.json: off (404) without CDS_ADMIN_TOKEN; with it, only a
Bearer of that token may read (else 401), never on the strength of an EHR's JWT; the page and the
JSON are the same figures, from SQLite and from PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from cds_service.app import create_app
from cds_service.cards.content import load_card_content
from cds_service.report import build_report, parse_period, publish
from cds_service.report.html import CONTENT_SECURITY_POLICY
from cds_service.report.publish import offered_reasons
from cds_service.runtime import runtime_of
from cds_service.security import AuthSettings
from cds_service.settings import Settings
from cds_service.storage import Storage
from tests.conftest import NO_AUTH
from tests.report.conftest import run, storage_settings
from tests.report.history import PV, record_known_history

TOKEN = "admin-token-for-the-report-tests-5b9d0c"
PERIOD = {"since": "2026-11-02", "until": "2026-11-15"}
# A JWT-shaped bearer, like an EHR sends to the hooks: never a key to the report.
EHR_JWT = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlIn0.c2lnbmF0dXJl"


def _app(url: str, token: str | None = TOKEN, auth: AuthSettings = NO_AUTH) -> FastAPI:
    settings = Settings(admin_token=token)
    return create_app(settings=settings, auth=auth, storage=storage_settings(url))


Scenario = Callable[[httpx.AsyncClient, Storage], Awaitable[None]]


def serve_and(url: str, scenario: Scenario, token: str | None = TOKEN, auth: AuthSettings = NO_AUTH) -> None:
    """Start the app on `url` (with the known history), and run `scenario` against it."""

    async def main() -> None:
        app = _app(url, token, auth)
        async with app.router.lifespan_context(app):
            storage = runtime_of(app).storage
            assert storage is not None
            await record_known_history(storage)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cds.test") as client:
                await scenario(client, storage)

    run(main())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_page_and_the_json_with_the_admin_token(database_url: str) -> None:
    async def scenario(client: httpx.AsyncClient, storage: Storage) -> None:
        page = await client.get("/admin/report", params=PERIOD, headers=_bearer(TOKEN))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["cache-control"] == "no-store"
        assert page.text.count("<svg") == 3  # PV urgent and baseline, order-sign cord-features
        assert f"<h2>{PV}</h2>" in page.text

        data = await client.get("/admin/report.json", params=PERIOD, headers=_bearer(TOKEN))
        assert data.status_code == 200
        body: dict[str, Any] = data.json()
        period = parse_period(PERIOD["since"], PERIOD["until"], dt.datetime.now(dt.UTC))
        expected = publish(await build_report(storage, period), offered_reasons(load_card_content())).to_json()
        assert {k: v for k, v in body.items() if k != "generated_at"} == {
            k: v for k, v in expected.items() if k != "generated_at"
        }
        urgent = body["services"][1]["levels"][0]
        assert (urgent["level"], urgent["issued"], urgent["accepted"], urgent["no_feedback"]) == (
            "urgent",
            16,
            "≥5",
            "<5",
        )

    serve_and(database_url, scenario)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _bearer("wrong-token-of-the-same-length-5b9d0"),
        _bearer(TOKEN[:-1]),
        _bearer(TOKEN + "x"),
        _bearer(""),
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        _bearer(EHR_JWT),
    ],
    ids=["none", "wrong", "prefix", "longer", "empty", "no-scheme", "basic", "ehr-jwt"],
)
def test_anything_but_the_admin_token_is_401(database_url: str, headers: dict[str, str]) -> None:
    async def scenario(client: httpx.AsyncClient, _: Storage) -> None:
        for path in ("/admin/report", "/admin/report.json"):
            response = await client.get(path, params=PERIOD, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="cds-admin"'
            assert response.json()["error"] == "unauthorized"
            assert TOKEN not in response.text and "16" not in response.text

    serve_and(database_url, scenario)


def test_without_an_admin_token_the_report_does_not_exist(database_url: str) -> None:
    async def scenario(client: httpx.AsyncClient, _: Storage) -> None:
        for path in ("/admin/report", "/admin/report.json"):
            response = await client.get(path, headers=_bearer(TOKEN))
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"

    serve_and(database_url, scenario, token=None)


def test_the_ehrs_jwt_trust_neither_guards_nor_opens_the_report(database_url: str) -> None:
    # Client authentication required (no issuer trusted): the hooks answer 401, the report is
    # governed by its own token only.
    async def scenario(client: httpx.AsyncClient, _: Storage) -> None:
        assert (await client.post(f"/cds-services/{PV}", json={})).status_code == 401
        assert (await client.get("/admin/report.json", headers=_bearer(EHR_JWT))).status_code == 401
        assert (await client.get("/admin/report.json", headers=_bearer(TOKEN))).status_code == 200

    serve_and(database_url, scenario, auth=AuthSettings(mode="required", public_base_url="http://cds.test"))


def test_a_bad_period_is_400_after_authentication(database_url: str) -> None:
    async def scenario(client: httpx.AsyncClient, _: Storage) -> None:
        assert (await client.get("/admin/report.json", params={"since": "soon"})).status_code == 401
        for params in ({"since": "soon"}, {"since": "0d"}, {"since": "2026-11-10", "until": "2026-11-01"}):
            response = await client.get("/admin/report.json", params=params, headers=_bearer(TOKEN))
            assert response.status_code == 400
            assert response.json()["error"] == "invalid_period"

    serve_and(database_url, scenario)


def test_the_admin_token_is_a_long_secret() -> None:
    with pytest.raises(ValidationError):
        Settings(admin_token="too-short")
    assert Settings(admin_token="").admin_token is None  # CDS_ADMIN_TOKEN= (empty): off
    settings = Settings(admin_token=TOKEN)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
