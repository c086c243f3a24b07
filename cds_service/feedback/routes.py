"""`POST /cds-services/{service_id}/feedback` (CDS Hooks 2.0 "Feedback").

Answers:
- 200 `{}` once every entry is stored (or was already: resubmission is idempotent). The
  specification defines no response body or status for feedback; any 2xx tells the client its
  feedback arrived, and an empty object is the least a JSON client can choke on.
- 400 (`invalid_json`, `invalid_request`, `too_deeply_nested`) for a body that is not a valid
  feedback request; nothing of the request is stored then (all or nothing).
- 404 `unknown_service` for a service id this server does not offer.
- 413 `payload_too_large` above FEEDBACK_MAX_BYTES.
- 503 `storage_unavailable` when the database cannot be reached: the client may send it again.

Feedback on a card uuid this service has no record of issuing is stored and answered 200: the
uuid is opaque to the client, which cannot fix anything on a 4xx; the card may predate storage or
its recording may have failed; and a 4xx would let callers probe which card uuids exist. Such rows
never match a patient, so they cannot change what the service decides. They are counted in the log.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from cds_service.feedback.models import FeedbackItem, FeedbackRequest
from cds_service.observability import FEEDBACK
from cds_service.protocol.body import parse_json_object, read_limited_body
from cds_service.protocol.dependencies import CardMemoryDep, RegistryDep, SettingsDep, StorageDep
from cds_service.protocol.errors import CdsError, unknown_service, validation_details
from cds_service.storage.db import bounded
from cds_service.storage.repository import FeedbackRecord, record_feedback

log = logging.getLogger("cds_service.feedback")

# 1000 entries of a few hundred bytes each, with room for vendor extensions.
FEEDBACK_MAX_BYTES = 1024 * 1024

router = APIRouter()


def _record(item: FeedbackItem) -> FeedbackRecord:
    reason = item.overrideReason
    return FeedbackRecord(
        card_uuid=item.card,
        outcome=item.outcome,
        outcome_timestamp=item.outcomeTimestamp,
        accepted_suggestions=[s.id for s in item.acceptedSuggestions] if item.acceptedSuggestions else None,
        override_reason=reason.reason.model_dump(include={"system", "code", "display"}, exclude_none=True)
        if reason and reason.reason
        else None,
        user_comment=reason.userComment if reason and reason.userComment else None,
    )


@router.post("/cds-services/{service_id}/feedback")
async def post_feedback(
    service_id: str,
    request: Request,
    registry: RegistryDep,
    limits: SettingsDep,
    storage: StorageDep,
    memory: CardMemoryDep,
) -> JSONResponse:
    started = time.perf_counter()
    if registry.get(service_id) is None:
        raise unknown_service()
    max_bytes = min(FEEDBACK_MAX_BYTES, limits.max_body_bytes)
    body = parse_json_object(await read_limited_body(request, max_bytes), limits.max_json_depth)
    try:
        feedback = FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        raise CdsError(
            400, "invalid_request", "The request is not a valid CDS Hooks feedback request.", validation_details(exc)
        ) from None

    if storage is None:
        raise CdsError(
            503, "storage_unavailable", "Feedback cannot be stored at the moment; please send it again later."
        )
    await memory.flush()  # cards this process queued before this post: written first (bounded wait)
    try:
        records = [_record(item) for item in feedback.feedback]
        result = await bounded(
            lambda: record_feedback(storage, service_id, records), storage.settings.db_write_timeout_seconds
        )
    except (DBAPIError, PoolTimeoutError, OSError) as exc:  # OSError includes TimeoutError (bounded)
        log.error(
            "feedback could not be stored",
            extra={"event": "feedback", "service": service_id, "status": 503, "error_type": type(exc).__name__},
        )
        raise CdsError(
            503, "storage_unavailable", "Feedback cannot be stored at the moment; please send it again later."
        ) from None
    for item in feedback.feedback:
        FEEDBACK.labels(service_id, item.outcome).inc()
    log.info(
        "feedback stored",
        extra={
            "event": "feedback",
            "service": service_id,
            "status": 200,
            "received": result.received,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "unknown_cards": result.unknown_cards,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return JSONResponse({})
