"""Property-based fuzzing of the three hooks and feedback: no input of any shape gets a 5xx or hangs.

Requests are real ones (every fixture, and Synthea records with an urgent MS chart added) mutated
anywhere (tests/fuzzing.py). Each answer must be a valid CDS Hooks response (200 with `cards`),
feedback's `200 {}`, or a 4xx with the service's JSON error body that echoes nothing of the input.

The fast run tries a few hundred bodies per endpoint; CDS_FUZZ_EXAMPLES=20000 runs longer. Feedback
is stored in a PostgreSQL database of its own when the local server is reachable (NUL characters
and the like fail there, not on SQLite), else in SQLite.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.storage import StorageSettings
from tests.cds_hooks_rules import check_response
from tests.conftest import NO_AUTH, NOW
from tests.fuzzing import (
    CANARY,
    SERVICE_OF_HOOK,
    feedback_seeds,
    fuzz_examples,
    hook_seeds,
    mutated,
    to_body,
)
from tests.postgres import fresh_postgres_database, postgres_reachable

# Not a speed limit: a call that takes this long is hanging (calls here take milliseconds).
HANG_SECONDS = 30.0
FUZZ = settings(
    max_examples=fuzz_examples(250),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    database=None,
)
CARD_MEMORY_LOG = "cds_service.services.card_memory"  # a failed issued-card write is logged there
HOOK_SEEDS = hook_seeds()
FEEDBACK_SEEDS = feedback_seeds()


def _postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database's URL (dropped afterwards), or None without a reachable server."""
    if not postgres_reachable():
        yield None
        return
    with fresh_postgres_database("cds_test_fuzz") as url:
        yield url


class Records(logging.Handler):
    """The service's log records of one call."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    for url in _postgres_database():
        url = url or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db"
        # A generous override-read bound: on a loaded machine the 150 ms default gives up (a logged,
        # correct fallback), and this test is about the input, not about the database's speed.
        storage = StorageSettings(
            database_url=url, patient_hash_key="fuzz-test-patient-hash-key-0123456789", db_read_timeout_ms=10_000
        )
        app = create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


@pytest.fixture(scope="module")
def service_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("cds_service")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def post(client: TestClient, log: Records, url: str, body: bytes) -> Any:
    """The answer to one call; the call must not hang, nor log an error or anything of the input."""
    log.records.clear()
    started = time.monotonic()
    response = client.post(url, content=body, headers={"content-type": "application/json"})
    assert time.monotonic() - started < HANG_SECONDS, "the call hung"
    for record in log.records:  # (cards are written after the answer: a failed write shows in a later call)
        assert record.levelno < logging.ERROR, f"{record.name}: {record.getMessage()}"
        assert record.name != CARD_MEMORY_LOG or record.levelno < logging.WARNING, record.getMessage()
        assert CANARY not in record.getMessage() and CANARY not in repr(vars(record)), "client input in the log"
    return response


def check_answer(response: Any, feedback: bool = False) -> None:
    """A valid CDS Hooks answer, or a 4xx JSON error that echoes nothing of the request."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    body = response.json()
    if response.status_code == 200:
        if feedback:
            assert body == {}
        else:
            check_response(body)
        return
    assert 400 <= response.status_code < 500
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert set(body) <= {"error", "message", "details"}, body
    assert CANARY not in response.text, "an error answer echoes client input"
    assert response.status_code != 422, "FastAPI's own validation answer leaked through"


@FUZZ
@given(body=mutated(HOOK_SEEDS))
def test_no_hook_call_of_any_shape_gets_a_5xx(
    fuzz_client: TestClient, service_log: Records, body: dict[str, Any]
) -> None:
    hook = body.get("hook")
    service = SERVICE_OF_HOOK.get(hook, "ms-back-pain-patient-view") if isinstance(hook, str) else None
    url = f"/cds-services/{service or 'ms-back-pain-order-sign'}"
    check_answer(post(fuzz_client, service_log, url, to_body(body)))


@FUZZ
@given(body=mutated(FEEDBACK_SEEDS, max_mutations=3), service=st.sampled_from(sorted(SERVICE_OF_HOOK.values())))
def test_no_feedback_of_any_shape_gets_a_5xx(
    fuzz_client: TestClient, service_log: Records, body: dict[str, Any], service: str
) -> None:
    check_answer(post(fuzz_client, service_log, f"/cds-services/{service}/feedback", to_body(body)), feedback=True)


def test_the_fuzz_checks_see_the_service_log(fuzz_client: TestClient, service_log: Records) -> None:
    """The log checks above are not vacuous: a call's own log line reaches the capture."""
    response = post(fuzz_client, service_log, "/cds-services/ms-back-pain-patient-view", to_body(HOOK_SEEDS[0]))
    check_answer(response)
    assert any(getattr(r, "event", None) == "cds_call" for r in service_log.records)
