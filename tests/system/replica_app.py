"""The app one replica runs in tests/system/test_replicas.py: `python -m uvicorn tests.system.replica_app:app`.

Configured by the environment only, like a deployed replica: CDS_DATABASE_URL, CDS_PATIENT_HASH_KEY,
CDS_AUTH_* (the service's own settings), plus
- CDS_REDIS_URL / CDS_REDIS_KEY_PREFIX: the shared replay cache (unset URL: the database's seen_jti);
- CDS_TEST_NOW: an ISO-8601 instant the clinical clock is pinned to (the fixtures are dated for it).

"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

from cds_service.app import create_app, utc_now


def _clock() -> Callable[[], dt.datetime]:
    pinned = os.environ.get("CDS_TEST_NOW")
    if not pinned:
        return utc_now
    now = dt.datetime.fromisoformat(pinned)
    if now.tzinfo is None:
        raise ValueError("CDS_TEST_NOW needs a UTC offset")
    return lambda: now


app = create_app(clock=_clock())
