"""Shared test set-up: a fixed "now", the app under test, and the fixture patients."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.security import AuthSettings

# Apps started by tests keep their SQLite file out of the working tree (the default is ./cds-service.db).
os.environ.setdefault("CDS_DATABASE_URL", f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='cds-tests-')}/cds.db")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "patient-view"
SHARED = ROOT.parent / "shared"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
SERVICE_URL = "/cds-services/ms-back-pain-patient-view"
# Client JWTs are tested in test_client_auth.py; elsewhere the protocol is tested without them.
NO_AUTH = AuthSettings(mode="disabled")


def expected_outcomes() -> dict[str, dict[str, Any]]:
    return json.loads((FIXTURES / "expected.json").read_text())


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def with_new_urinary_retention(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of the urgent-new-paraparesis request with a red flag it did not show: urinary retention
    dated today (the alert-fatigue rule brings an overridden card back at full level for it)."""
    changed = copy.deepcopy(request)
    retention = {
        "resourceType": "Condition",
        "id": "pv01-new-retention",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "267064002", "display": "Retention of urine"}]
        },
        "subject": {"reference": "Patient/pv01-patient"},
        "onsetDateTime": "2026-11-25",
    }
    changed["prefetch"]["conditions"]["entry"].append({"resource": retention})
    return changed


@pytest.fixture(scope="session")
def client() -> TestClient:
    return TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH))
