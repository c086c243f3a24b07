"""The override memory behind the alert-fatigue rule: window, service, order of arrival, patient;
and migration 0003, which fills the patient of existing feedback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service.storage import (
    recent_override,
    record_issued_cards,
    upgrade_database,
)
from cds_service.storage.db import sync_url
from cds_service.storage.migrations import downgrade_database
from cds_service.storage.models import Feedback
from cds_service.storage.repository import _RECENT_OVERRIDE
from tests.conftest import NOW
from tests.storage.support import (
    BACKENDS,
    HASH_KEY,
    PATIENT_ID,
    SERVICE_ID,
    Databases,
    Service,
    accepted,
    all_stored_text,
    assert_ok,
    card_record,
    overridden,
)

# --- override memory -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_recent_override_within_the_window_and_not_outside(service: Service) -> None:
    storage, window = service.storage, dt.timedelta(days=30)
    older = card_record(issued_at=NOW - dt.timedelta(days=20))
    newer = card_record(level="cord-features", indicator="warning", red_flag_refs=[])
    other_patient, other_service = card_record(patient_id="pt-someone-else"), card_record(service_id="another-service")
    await record_issued_cards(storage, [older, newer, other_patient, other_service])
    overridden_at = NOW - dt.timedelta(days=10)
    assert_ok(
        await service.post(
            {
                "feedback": [
                    overridden(older.card_uuid, NOW - dt.timedelta(days=19)),
                    overridden(
                        newer.card_uuid,
                        overridden_at,
                        overrideReason={"reason": {"code": "already-evaluated", "system": "urn:x"}},
                    ),
                    accepted(newer.card_uuid, NOW - dt.timedelta(days=1)),  # acceptance is not an override
                    overridden(other_patient.card_uuid, NOW - dt.timedelta(days=2)),
                ]
            }
        )
    )

    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW, window)
    assert memory is not None
    assert memory.card_uuid == newer.card_uuid and memory.overridden_at == overridden_at
    assert (memory.level, memory.indicator, memory.red_flag_refs) == ("cord-features", "warning", ())
    assert memory.override_reason == {"code": "already-evaluated", "system": "urn:x"}

    # Once the latest override leaves the window, the earlier one (still inside) is the answer.
    later = NOW + dt.timedelta(days=15)  # newer: 25 days ago, older: 34 days ago
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, later, window)
    assert memory is not None and memory.card_uuid == newer.card_uuid
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW, dt.timedelta(days=15))
    assert memory is not None and memory.card_uuid == newer.card_uuid
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW, dt.timedelta(days=9))
    assert memory is None
    # The older card carries its red flags with their dates.
    memory = await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW - dt.timedelta(days=11), window)
    assert memory is not None and memory.card_uuid == older.card_uuid
    assert memory.red_flag_refs == tuple(older.red_flag_refs)
    assert memory.issued_at == NOW - dt.timedelta(days=20)

    # Outside the window entirely: none.
    assert await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW + dt.timedelta(days=21), window) is None
    # Before the override happened: none (a small clock skew is tolerated).
    assert await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW - dt.timedelta(days=30), window) is None
    # The window default comes from the settings (30 days).
    assert (await recent_override(storage, SERVICE_ID, PATIENT_ID, NOW)).card_uuid == newer.card_uuid  # type: ignore[union-attr]
    # Another patient, another service, and a service that never issued the card: separate.
    assert (
        await recent_override(storage, SERVICE_ID, "pt-someone-else", NOW, window)
    ).card_uuid == other_patient.card_uuid  # type: ignore[union-attr]
    assert await recent_override(storage, "another-service", PATIENT_ID, NOW, window) is None
    assert await recent_override(storage, SERVICE_ID, "pt-nobody", NOW, window) is None
    assert PATIENT_ID not in all_stored_text(service.db)


@pytest.mark.anyio
async def test_recent_override_ignores_feedback_posted_to_another_service(service: Service) -> None:
    card = card_record(service_id="another-service")
    await record_issued_cards(service.storage, [card])
    # Posted to our service's endpoint, about a card another service issued.
    assert_ok(await service.post({"feedback": [overridden(card.card_uuid, NOW - dt.timedelta(days=1))]}))
    assert await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW) is None
    assert await recent_override(service.storage, "another-service", PATIENT_ID, NOW) is None


@pytest.mark.anyio
async def test_an_override_that_arrives_before_its_card_counts_once_the_card_is_recorded(service: Service) -> None:
    """Feedback can reach one replica before another has written the card: it is stored without a
    patient, and the card's arrival ties them (from either side, whichever is stored second)."""
    card = card_record()
    assert_ok(await service.post({"feedback": [overridden(card.card_uuid, NOW - dt.timedelta(days=1))]}))
    (row,) = service.db.rows(Feedback)
    assert row["patient_hash"] is None
    assert await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW) is None

    await record_issued_cards(service.storage, [card])
    (row,) = service.db.rows(Feedback)
    assert row["patient_hash"] == hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    memory = await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW)
    assert memory is not None and memory.card_uuid == card.card_uuid


@pytest.mark.anyio
async def test_feedback_on_a_known_card_is_stored_with_the_cards_patient(service: Service) -> None:
    card, other = card_record(), card_record(patient_id="pt-someone-else")
    await record_issued_cards(service.storage, [card, other])
    assert_ok(await service.post({"feedback": [overridden(card.card_uuid, NOW), accepted(other.card_uuid, NOW)]}))
    hashes = {row["card_uuid"]: row["patient_hash"] for row in service.db.rows(Feedback)}
    assert hashes == {
        card.card_uuid: hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest(),
        other.card_uuid: hmac.new(HASH_KEY.encode(), b"pt-someone-else", hashlib.sha256).hexdigest(),
    }


def test_the_override_look_up_starts_from_the_patients_overrides_not_their_cards(tmp_path: Path) -> None:
    """Its cost must not grow with how many cards the patient was shown (one per chart opening)."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    upgrade_database(url)
    engine = sa.create_engine(url)
    compiled = _RECENT_OVERRIDE.compile(dialect=engine.dialect)
    values = {"service_id": "s", "patient_hash": "h", "since": NOW, "until": NOW}
    with engine.connect() as connection:
        plan = [
            row[-1]
            for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled), tuple(values.get(name, 1) for name in compiled.positiontup or ())
            )
        ]
    engine.dispose()
    assert plan[0].startswith(
        "SEARCH feedback USING INDEX ix_feedback_service_id_patient_hash_outcome_outcome_timestamp"
    ), plan
    assert "issued_cards" in plan[1] and "card_uuid=?" in plan[1], plan


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0003_fills_the_patient_of_existing_feedback(backend: str, databases: Databases) -> None:
    url = databases.new(backend)
    upgrade_database(url, "0002")
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO issued_cards (card_uuid, service_id, hook_instance, patient_hash, indicator, level, red_flag_refs, issued_at)"
                    " VALUES ('c1', 's', 'h', 'hash-1', 'critical', 'urgent', '[]', '2026-11-20 10:00:00')"
                )
            )
            for card in ("c1", "c-unknown"):
                connection.execute(
                    sa.text(
                        "INSERT INTO feedback (card_uuid, service_id, outcome, outcome_timestamp, received_at)"
                        f" VALUES ('{card}', 's', 'overridden', '2026-11-21 10:00:00', '2026-11-21 10:00:01')"
                    )
                )
        upgrade_database(url)
        with engine.connect() as connection:
            rows = dict(connection.execute(sa.text("SELECT card_uuid, patient_hash FROM feedback")).all())
        assert rows == {"c1": "hash-1", "c-unknown": None}
        downgrade_database(url, "0002")
        assert "patient_hash" not in {c["name"] for c in sa.inspect(engine).get_columns("feedback")}
    finally:
        engine.dispose()
