"""Storage settings and wiring: the patient hash key, start-up migration, the lifespan, authentication."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import ValidationError

from cds_service.app import create_app
from cds_service.runtime import runtime_of
from cds_service.storage import (
    Storage,
    StorageSettings,
)
from cds_service.storage.models import Feedback
from tests.conftest import NO_AUTH, NOW
from tests.storage.support import (
    FEEDBACK_URL,
    GOOD,
    HASH_KEY,
    Database,
    Databases,
    assert_ok,
    storage_settings,
)

# --- settings and wiring -------------------------------------------------------------------------------


def test_patient_hash_key_has_a_development_default_that_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDS_PATIENT_HASH_KEY", raising=False)
    settings = StorageSettings()
    assert settings.uses_development_key
    with caplog.at_level(logging.WARNING, logger="cds_service.storage"):
        settings.warn_if_insecure()
    assert "CDS_PATIENT_HASH_KEY" in caplog.text
    monkeypatch.setenv("CDS_PATIENT_HASH_KEY", HASH_KEY)
    assert not StorageSettings().uses_development_key
    assert HASH_KEY not in repr(StorageSettings())
    with pytest.raises(ValidationError):
        StorageSettings(patient_hash_key="too-short")
    with pytest.raises(ValidationError):
        StorageSettings(database_url="sqlite+aiosqlite://")
    assert StorageSettings().override_window_days == 30


@pytest.mark.anyio
async def test_start_up_migrates_and_warns_about_the_development_key(
    databases: Databases, caplog: pytest.LogCaptureFixture
) -> None:
    url = databases.new("sqlite")
    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=StorageSettings(database_url=url))
    with caplog.at_level(logging.WARNING, logger="cds_service.storage"):
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
                assert_ok(await client.post(FEEDBACK_URL, json={"feedback": [GOOD]}))
    assert "CDS_PATIENT_HASH_KEY is not set" in caplog.text
    assert runtime_of(app).storage is None


@pytest.mark.anyio
async def test_without_storage_feedback_is_503() -> None:
    app = create_app(clock=lambda: NOW, auth=NO_AUTH)  # never started: its storage is not open
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
        response = await client.post(FEEDBACK_URL, json={"feedback": [GOOD]})
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"


def test_asgi_lifespan_opens_and_closes_the_storage(databases: Databases) -> None:
    """Through the ASGI lifespan protocol (as uvicorn runs it), not by calling the context directly."""
    from fastapi.testclient import TestClient

    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage_settings(databases.new("sqlite")))
    with TestClient(app) as client:
        assert isinstance(runtime_of(app).storage, Storage)
        response = client.post(FEEDBACK_URL, json={"feedback": [GOOD]})
        assert response.status_code == 200 and response.json() == {}
    assert runtime_of(app).storage is None


@pytest.mark.anyio
async def test_feedback_needs_client_authentication_by_default(database: Database) -> None:
    database.clear()
    app = create_app(clock=lambda: NOW, storage=storage_settings(database.url))  # client JWTs required (the default)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cds.test") as client:
            response = await client.post(FEEDBACK_URL, json={"feedback": [GOOD]})
    assert response.status_code == 401
    assert database.count(Feedback) == 0
