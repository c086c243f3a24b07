"""`/openapi.json` describes the service as EHR integrators meet it: a valid OpenAPI 3.1 document
whose hook-call and feedback bodies, cards and error shapes are the ones the service really takes
and sends, and no 422 (the service answers 400)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from tests.conftest import SERVICE_URL, load_fixture


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A JSON Schema validator for `schema`, resolving `#/components/...` against the document."""
    root = {**document, **schema}
    cls = jsonschema.validators.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema"})
    return cls(root)


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_no_operation_documents_a_422(document: dict[str, Any]) -> None:
    assert "422" not in json.dumps(document["paths"])
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_hook_call_documents_its_body_answer_and_errors(document: dict[str, Any]) -> None:
    call = document["paths"]["/cds-services/{service_id}"]["post"]
    assert call["requestBody"]["required"] is True
    assert set(call["responses"]) == {"200", "400", "401", "403", "404", "405", "412", "413", "503"}
    body_schema = call["requestBody"]["content"]["application/json"]["schema"]
    _validator(document, body_schema).validate(load_fixture("urgent-new-paraparesis"))
    with pytest.raises(jsonschema.ValidationError):
        _validator(document, body_schema).validate({"hook": "patient-view"})  # no hookInstance, no context


def test_what_the_service_answers_matches_the_documented_shapes(document: dict[str, Any], client: TestClient) -> None:
    responses = document["paths"]["/cds-services/{service_id}"]["post"]["responses"]
    cards = client.post(SERVICE_URL, json=load_fixture("urgent-new-paraparesis"))
    assert cards.status_code == 200
    _validator(document, responses["200"]["content"]["application/json"]["schema"]).validate(cards.json())
    error = client.post(SERVICE_URL, content=b"{not json", headers={"content-type": "application/json"})
    assert error.status_code == 400
    _validator(document, responses["400"]["content"]["application/json"]["schema"]).validate(error.json())


def test_feedback_documents_its_body(document: dict[str, Any]) -> None:
    feedback = document["paths"]["/cds-services/{service_id}/feedback"]["post"]
    schema = feedback["requestBody"]["content"]["application/json"]["schema"]
    item = {
        "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "already-evaluated", "system": "https://example.org"}},
        "outcomeTimestamp": "2026-11-25T12:00:00Z",
    }
    _validator(document, schema).validate({"feedback": [item]})
