"""Feedback as stored: the round trip, idempotent resubmission, concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service.storage import (
    FeedbackRecord,
    FeedbackResult,
    recent_override,
    record_feedback,
    record_issued_cards,
)
from cds_service.storage.models import Feedback, IssuedCard
from tests.conftest import NOW
from tests.storage.support import (
    HASH_KEY,
    PATIENT_ID,
    SERVICE_ID,
    Service,
    accepted,
    all_stored_text,
    assert_ok,
    card_record,
    overridden,
)

# --- the round trip ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_accepted_and_overridden(service: Service) -> None:
    card = card_record()
    assert await record_issued_cards(service.storage, [card]) == 1
    assert await record_issued_cards(service.storage, [card]) == 0  # recording twice is harmless

    body = {
        "feedback": [
            accepted(card.card_uuid, "2026-11-20T10:05:31Z"),
            overridden(
                card.card_uuid,
                "2026-11-20T11:00:00.250+01:00",
                overrideReason={
                    "reason": {
                        "code": "already-evaluated",
                        "system": "urn:ms-back-pain-cds:override-reason",
                        "display": "Already evaluated",
                    },
                    "userComment": "Seen by neurology last week.",
                    "vendorExtension": {"x": 1},
                },
                vendorField=True,
            ),
        ]
    }
    assert_ok(await service.post(body))

    (issued,) = service.db.rows(IssuedCard)
    assert issued["card_uuid"] == card.card_uuid
    assert issued["service_id"] == SERVICE_ID and issued["hook_instance"] == card.hook_instance
    assert issued["patient_hash"] == hmac.new(HASH_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert (issued["indicator"], issued["level"]) == ("critical", "urgent")
    assert issued["red_flag_refs"] == [
        {"reference": "Condition/pv01-paraparesis", "concept": "weakness", "date": "2026-11-10"},
        {"reference": "Observation/pv01-bladder", "concept": "bladder", "date": None},
    ]
    assert issued["issued_at"] == NOW - dt.timedelta(days=12)

    rows = {row["outcome"]: row for row in service.db.rows(Feedback)}
    assert set(rows) == {"accepted", "overridden"}
    accept, override = rows["accepted"], rows["overridden"]
    assert accept["card_uuid"] == override["card_uuid"] == card.card_uuid
    assert accept["service_id"] == override["service_id"] == SERVICE_ID
    assert accept["accepted_suggestions"] == [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}]
    assert accept["override_reason"] is None and accept["user_comment"] is None
    assert accept["outcome_timestamp"] == dt.datetime(2026, 11, 20, 10, 5, 31, tzinfo=dt.UTC)
    assert override["accepted_suggestions"] is None
    assert override["override_reason"] == {
        "system": "urn:ms-back-pain-cds:override-reason",
        "code": "already-evaluated",
        "display": "Already evaluated",
    }
    assert override["user_comment"] == "Seen by neurology last week."
    assert override["outcome_timestamp"] == dt.datetime(2026, 11, 20, 10, 0, 0, 250000, tzinfo=dt.UTC)
    for row in (accept, override):
        received = row["received_at"]
        assert received.tzinfo is not None and abs(dt.datetime.now(dt.UTC) - received) < dt.timedelta(minutes=5)

    # The patient id is nowhere in clear: not in any column of any table...
    stored = all_stored_text(service.db)
    assert card.card_uuid in stored  # (the search does see the data)
    assert PATIENT_ID not in stored
    # ...nor anywhere in the SQLite files themselves (main file and write-ahead log).
    if service.db.backend == "sqlite":
        path = Path(sa.make_url(service.db.url).database or "")
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                assert PATIENT_ID.encode() not in file.read_bytes()


@pytest.mark.anyio
async def test_override_without_reason_and_reason_with_only_a_comment(service: Service) -> None:
    card = str(uuid.uuid4())
    assert_ok(await service.post({"feedback": [overridden(card, "2026-11-20T10:00:00Z")]}))
    assert_ok(
        await service.post(
            {"feedback": [overridden(card, "2026-11-21T10:00:00Z", overrideReason={"userComment": "Not now"})]}
        )
    )
    rows = sorted(service.db.rows(Feedback), key=lambda r: r["outcome_timestamp"])
    assert [(r["override_reason"], r["user_comment"]) for r in rows] == [(None, None), (None, "Not now")]


@pytest.mark.anyio
async def test_feedback_on_an_unknown_card_is_stored(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cds_service.feedback"):
        assert_ok(await service.post({"feedback": [overridden("never-issued-card", "2026-11-20T10:00:00Z")]}))
    (row,) = service.db.rows(Feedback)
    assert row["card_uuid"] == "never-issued-card"
    assert [r.__dict__["unknown_cards"] for r in caplog.records if r.__dict__.get("event") == "feedback"] == [1]
    assert await recent_override(service.storage, SERVICE_ID, PATIENT_ID, NOW) is None


# --- idempotency and concurrency -------------------------------------------------------------------


@pytest.mark.anyio
async def test_resubmitted_feedback_is_stored_once(service: Service) -> None:
    card = str(uuid.uuid4())
    item = overridden(
        card, "2026-11-20T10:00:00Z", overrideReason={"reason": {"code": "patient-declined", "system": "urn:x"}}
    )
    for _ in range(3):
        assert_ok(await service.post({"feedback": [item]}))
    # The same instant written another way, and the same entry twice in one request.
    same_instant = overridden(card, "2026-11-20T11:00:00.000+01:00")
    assert_ok(await service.post({"feedback": [same_instant, same_instant]}))
    assert service.db.count(Feedback) == 1
    # A different outcome, or a later override of the same card, is new feedback.
    assert_ok(
        await service.post(
            {"feedback": [accepted(card, "2026-11-20T10:00:00Z"), overridden(card, "2026-11-20T10:00:01Z")]}
        )
    )
    assert service.db.count(Feedback) == 3


@pytest.mark.anyio
async def test_record_feedback_reports_what_it_stored(service: Service) -> None:
    card = card_record()
    await record_issued_cards(service.storage, [card])
    at = NOW - dt.timedelta(hours=1)
    items = [FeedbackRecord(card.card_uuid, "overridden", at), FeedbackRecord("unknown-card", "overridden", at)]
    first = await record_feedback(service.storage, SERVICE_ID, items + items[:1])
    assert first == FeedbackResult(received=3, stored=2, duplicates=1, unknown_cards=1)
    again = await record_feedback(service.storage, SERVICE_ID, items)
    assert again == FeedbackResult(received=2, stored=0, duplicates=2, unknown_cards=1)
    assert await record_feedback(service.storage, SERVICE_ID, []) == FeedbackResult(0, 0, 0, 0)


@pytest.mark.anyio
async def test_200_concurrent_posts_lose_nothing(service: Service) -> None:
    cards = [str(uuid.uuid4()) for _ in range(200)]
    start = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    bodies = [
        {
            "feedback": [
                accepted(c, start + dt.timedelta(seconds=i))
                if i % 2
                else overridden(c, start + dt.timedelta(seconds=i))
            ]
        }
        for i, c in enumerate(cards)
    ]
    responses = await asyncio.gather(*(service.post(body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * 200, {r.text for r in responses if r.status_code != 200}
    assert service.db.count(Feedback) == 200
    assert {row["card_uuid"] for row in service.db.rows(Feedback)} == set(cards)


@pytest.mark.anyio
async def test_concurrent_resubmissions_store_one_row(service: Service) -> None:
    body = {"feedback": [overridden(str(uuid.uuid4()), "2026-11-20T10:00:00Z")]}
    responses = await asyncio.gather(*(service.post(body) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert service.db.count(Feedback) == 1
