"""What the report reads is recorded as cards are issued: the alert-fatigue action (from the
decision, through the card memory) and the card's suggestions; and `cds-service report` writes the
page from the configured database."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cds_service import cli
from cds_service.app import create_app
from cds_service.storage.db import sync_url
from cds_service.storage.models import IssuedCard
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture, with_new_urinary_retention
from tests.report.conftest import opened, run, storage_settings
from tests.report.history import MRI_LABEL, record_known_history


def _override(client: TestClient, card_uuid: str) -> None:
    item = {
        "card": card_uuid,
        "outcome": "overridden",
        "overrideReason": {"reason": {"system": "urn:ms-back-pain-cds:override-reason", "code": "already-evaluated"}},
        "outcomeTimestamp": (NOW - dt.timedelta(hours=2)).isoformat(),
    }
    assert client.post(SERVICE_URL + "/feedback", json={"feedback": [item]}).status_code == 200


def _card(client: TestClient, request: dict[str, Any]) -> dict[str, Any]:
    card: dict[str, Any] = client.post(SERVICE_URL, json=request).json()["cards"][0]
    return card


def _recorded(database_url: str) -> dict[str, tuple[str | None, Any]]:
    client_engine = sa.create_engine(sync_url(database_url))
    try:
        with client_engine.connect() as connection:
            table = IssuedCard.__table__
            rows = connection.execute(sa.select(table.c.card_uuid, table.c.fatigue_action, table.c.suggestions))
            return {row.card_uuid: (row.fatigue_action, row.suggestions) for row in rows}
    finally:
        client_engine.dispose()


def test_issued_cards_record_the_alert_fatigue_action_and_their_suggestions(database_url: str) -> None:
    request = load_fixture("urgent-new-paraparesis")
    with_new_flag = with_new_urinary_retention(request)
    app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage_settings(database_url))
    with TestClient(app) as client:
        first = _card(client, request)
        _override(client, first["uuid"])
        quiet = _card(client, request)
        assert quiet["indicator"] == "info"
        loud = _card(client, with_new_flag)
        assert loud["indicator"] == "critical"
    # The app has shut down: every queued card is written.

    recorded = _recorded(database_url)
    assert recorded[first["uuid"]][0] is None  # nothing overridden yet
    assert recorded[quiet["uuid"]][0] == "downgraded"
    assert recorded[loud["uuid"]][0] == "raised-again"
    suggestion = first["suggestions"][0]
    assert recorded[first["uuid"]][1] == [{"id": suggestion["uuid"], "label": suggestion["label"]}]
    assert suggestion["label"] == MRI_LABEL


def test_the_cli_writes_the_page_from_the_configured_database(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def record() -> None:
        async with opened(database_url) as storage:
            await record_known_history(storage)

    run(record())
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    monkeypatch.setenv("CDS_PATIENT_HASH_KEY", "report-test-patient-hash-key-0123456789")
    out, data = tmp_path / "report.html", tmp_path / "report.json"
    # The CLI runs its own event loop (asyncio.run): in a thread of its own, as run() does.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        argv = ["report", "--since", "2026-11-02", "--until", "2026-11-15", "--out", str(out), "--json", str(data)]
        pool.submit(cli.main, argv).result()
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3
    assert '"issued": 16' in data.read_text(encoding="utf-8")
    with pytest.raises(SystemExit):
        cli.main(["report", "--since", "whenever", "--out", str(out)])
