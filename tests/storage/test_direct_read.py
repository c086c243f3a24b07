"""The SQLite override look-up without SQLAlchemy's execution layer (storage/direct_read.py) returns
what SQLAlchemy returns for the same statement: the same rows, with the same Python values (aware
UTC datetimes, parsed JSON), for every parameter set of the override tests."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service.storage import record_issued_cards
from cds_service.storage.direct_read import DirectRead
from cds_service.storage.repository import _RECENT_OVERRIDE
from tests.conftest import NOW
from tests.storage.support import PATIENT_ID, SERVICE_ID, Service, accepted, assert_ok, card_record, overridden


@pytest.mark.anyio
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_direct_read_returns_what_sqlalchemy_returns(service: Service) -> None:
    storage = service.storage
    assert storage is not None and storage.reader is not None
    older = card_record(issued_at=NOW - dt.timedelta(days=20))
    newer = card_record(level="cord-features", indicator="warning", red_flag_refs=[])
    await record_issued_cards(storage, [older, newer])
    reason = {"reason": {"code": "already-evaluated", "system": "urn:x", "display": "é"}}
    feedback = [
        overridden(older.card_uuid, NOW - dt.timedelta(days=19)),
        overridden(newer.card_uuid, "2026-11-22T10:05:31+01:00", overrideReason=reason),  # stored as UTC
        accepted(newer.card_uuid, NOW - dt.timedelta(days=1)),
    ]
    assert_ok(await service.post({"feedback": feedback}))
    direct = DirectRead(_RECENT_OVERRIDE, storage.reader)
    windows = [dt.timedelta(days=d) for d in (1, 9, 15, 30, 400)]
    moments = [NOW, NOW - dt.timedelta(days=11), NOW + dt.timedelta(days=21)]
    found = 0
    for window in windows:
        for now in moments:
            for patient in (storage.hash_patient(PATIENT_ID), storage.hash_patient("pt-nobody")):
                params = {"service_id": SERVICE_ID, "patient_hash": patient, "since": now - window, "until": now}
                with storage.reader.connect() as connection:
                    expected = connection.execute(_RECENT_OVERRIDE, params).first()
                got = direct.first(storage.reader, params)
                assert (got is None) == (expected is None), (window, now)
                if expected is not None:
                    found += 1
                    assert tuple(got) == tuple(expected)
                    assert got._fields == tuple(expected._fields)
                    assert got.outcome_timestamp.tzinfo is not None and got.issued_at.tzinfo is not None
    assert found >= 4  # the parameter sets find rows as well as none
