"""What the feedback endpoint refuses, and how: 400/404/405/413 JSON, 503 when the database fails."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cds_service.storage.models import Feedback
from tests.storage.support import (
    FEEDBACK_URL,
    GOOD,
    Service,
    accepted,
    assert_ok,
)

# --- bad requests ------------------------------------------------------------------------------------


INVALID_BODIES: dict[str, tuple[Any, str]] = {
    "not-json": (b"{feedback: ", "invalid_json"),
    "empty": (b"", "invalid_json"),
    "array": ([GOOD], "invalid_request"),
    "no-feedback": ({"cards": []}, "invalid_request"),
    "feedback-not-a-list": ({"feedback": GOOD}, "invalid_request"),
    "no-card": ({"feedback": [{k: v for k, v in GOOD.items() if k != "card"}]}, "invalid_request"),
    "empty-card": ({"feedback": [{**GOOD, "card": ""}]}, "invalid_request"),
    "unknown-outcome": ({"feedback": [{**GOOD, "outcome": "ignored"}]}, "invalid_request"),
    "no-timestamp": ({"feedback": [{k: v for k, v in GOOD.items() if k != "outcomeTimestamp"}]}, "invalid_request"),
    "date-only-timestamp": ({"feedback": [{**GOOD, "outcomeTimestamp": "2026-11-20"}]}, "invalid_request"),
    "numeric-timestamp": ({"feedback": [{**GOOD, "outcomeTimestamp": 1795000000}]}, "invalid_request"),
    "bad-timestamp": ({"feedback": [{**GOOD, "outcomeTimestamp": "yesterday"}]}, "invalid_request"),
    "accepted-without-suggestions": ({"feedback": [{**GOOD, "outcome": "accepted"}]}, "invalid_request"),
    "suggestion-without-id": (
        {"feedback": [{**accepted("c", "2026-11-20T10:00:00Z"), "acceptedSuggestions": [{}]}]},
        "invalid_request",
    ),
    "overridden-with-suggestions": ({"feedback": [{**GOOD, "acceptedSuggestions": [{"id": "s"}]}]}, "invalid_request"),
    "reason-without-code": (
        {"feedback": [{**GOOD, "overrideReason": {"reason": {"system": "urn:x"}}}]},
        "invalid_request",
    ),
    "one-bad-entry-of-two": ({"feedback": [GOOD, {**GOOD, "outcome": "maybe"}]}, "invalid_request"),
    "too-many-entries": ({"feedback": [GOOD] * 1001}, "invalid_request"),
    "too-deep": (b'{"feedback": [], "x": ' + b"[" * 80 + b"]" * 80 + b"}", "too_deeply_nested"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(INVALID_BODIES))
async def test_invalid_bodies_are_400_json_and_store_nothing(service: Service, case: str) -> None:
    body, code = INVALID_BODIES[case]
    response = await service.post(body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["error"] == code and answer["message"]
    assert "4e0a3a1e" not in response.text  # input values are not echoed
    assert service.db.count(Feedback) == 0


@pytest.mark.anyio
async def test_body_over_the_feedback_limit_is_413(service: Service) -> None:
    response = await service.post({"feedback": [{**GOOD, "pad": "x" * (1024 * 1024)}]})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


@pytest.mark.anyio
async def test_unknown_service_is_404(service: Service) -> None:
    response = await service.post({"feedback": [GOOD]}, url="/cds-services/no-such-service/feedback")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_service"
    assert service.db.count(Feedback) == 0


@pytest.mark.anyio
async def test_database_failure_is_503_and_can_be_retried(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    import cds_service.feedback.routes as routes

    real = routes.record_feedback

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("database down"))

    monkeypatch.setattr(routes, "record_feedback", failing)
    response = await service.post({"feedback": [GOOD]})
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    assert "database down" not in response.text
    monkeypatch.setattr(routes, "record_feedback", real)
    assert_ok(await service.post({"feedback": [GOOD]}))
    assert service.db.count(Feedback) == 1


@pytest.mark.anyio
async def test_feedback_endpoint_answers_only_post(service: Service) -> None:
    response = await service.client.get(FEEDBACK_URL)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
