"""The alert-fatigue rule, end to end: card issued -> clinician overrides it (feedback) -> the next
patient-view repeats it as information; a new red flag brings it back at full level."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.clinical.alert_fatigue import quiet_after_override
from cds_service.clinical.decision import Level, decide
from cds_service.clinical.facts import ClinicalFacts, Evidence, Finding
from cds_service.storage.settings import StorageSettings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture, with_new_urinary_retention

FEEDBACK_URL = SERVICE_URL + "/feedback"


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    storage = StorageSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/cds.db", patient_hash_key="k" * 40)
    with TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage)) as c:
        yield c


def _override(client: TestClient, card_uuid: str, when: dt.datetime) -> None:
    feedback = {
        "card": card_uuid,
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "system": "urn:ms-back-pain-cds:override-reason",
                "code": "already-evaluated",
                "display": "Already evaluated",
            },
            "userComment": "seen by neurology",
        },
        "outcomeTimestamp": when.isoformat(),
    }
    response = client.post(FEEDBACK_URL, json={"feedback": [feedback]})
    assert response.status_code == 200, response.text


def test_override_quiets_the_card_until_a_new_red_flag(client: TestClient) -> None:
    request = load_fixture("urgent-new-paraparesis")
    first = client.post(SERVICE_URL, json=request).json()["cards"][0]
    assert first["indicator"] == "critical"
    _override(client, first["uuid"], NOW - dt.timedelta(hours=2))

    second = client.post(SERVICE_URL, json=request).json()["cards"][0]
    assert second["indicator"] == "info"
    assert "overridden on 25 Nov 2026 (Already evaluated)" in second["detail"]
    assert second["summary"] == first["summary"]  # same advice, shown quietly

    with_new_flag = with_new_urinary_retention(request)
    third = client.post(SERVICE_URL, json=with_new_flag).json()["cards"][0]
    assert third["indicator"] == "critical"


def test_other_patients_are_not_quieted(client: TestClient) -> None:
    first = client.post(SERVICE_URL, json=load_fixture("urgent-new-paraparesis")).json()["cards"][0]
    _override(client, first["uuid"], NOW - dt.timedelta(hours=1))
    other = client.post(SERVICE_URL, json=load_fixture("urgent-icd10cm-fy2026-bladder")).json()["cards"][0]
    assert other["indicator"] == "critical"


def test_an_old_override_outside_the_window_does_not_quiet(client: TestClient) -> None:
    first = client.post(SERVICE_URL, json=load_fixture("urgent-new-paraparesis")).json()["cards"][0]
    _override(client, first["uuid"], NOW - dt.timedelta(days=45))  # window: 30 days
    again = client.post(SERVICE_URL, json=load_fixture("urgent-new-paraparesis")).json()["cards"][0]
    assert again["indicator"] == "critical"


def test_the_rule_itself_is_pure() -> None:
    flag = Finding("weakness", "Muscle weakness", Evidence("Condition", "w", "x", dt.date(2026, 11, 20)), "motor")
    ms = Finding("multiple_sclerosis", "MS", Evidence("Condition", "ms", "x", None))
    back = Finding("back_pain", "Back pain", Evidence("Condition", "lbp", "x", None))
    decision = decide(ClinicalFacts(now=NOW.date(), multiple_sclerosis=(ms,), back_pain=(back,), new_red_flags=(flag,)))
    assert decision.level is Level.URGENT
    overridden = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    assert quiet_after_override(decision, overridden, ["Condition/w"], "x").quieted_by is not None
    assert quiet_after_override(decision, overridden, [], "x").quieted_by is None  # a flag the card did not show
    earlier = dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    assert quiet_after_override(decision, earlier, ["Condition/w"], "x").quieted_by is None  # dated after the override
