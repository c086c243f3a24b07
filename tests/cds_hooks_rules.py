"""Checks a CDS Hooks 2.0 service response against the specification's rules, independently of
the service's own pydantic models (so a bug in those models cannot hide a bad response)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

INDICATORS = {"info", "warning", "critical"}
SELECTION = {"at-most-one", "any"}
ACTIONS = {"create", "update", "delete"}
CARD_FIELDS = {
    "uuid",
    "summary",
    "detail",
    "indicator",
    "source",
    "suggestions",
    "selectionBehavior",
    "overrideReasons",
    "links",
}


def check_response(body: Any) -> None:
    assert isinstance(body, dict) and isinstance(body.get("cards"), list), "response is an object with a cards array"
    for card in body["cards"]:
        check_card(card)


def check_card(card: dict[str, Any]) -> None:
    assert set(card) <= CARD_FIELDS, f"unknown card fields {set(card) - CARD_FIELDS}"
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in INDICATORS
    assert isinstance(card["source"], dict) and card["source"]["label"]
    if "detail" in card:
        assert isinstance(card["detail"], str) and card["detail"]
    assert card.get("uuid"), "cards carry a uuid so feedback can name them"
    suggestions = card.get("suggestions") or []
    if suggestions:
        assert card.get("selectionBehavior") in SELECTION, "suggestions require selectionBehavior"
    for suggestion in suggestions:
        assert suggestion["label"] and suggestion.get("uuid")
        for action in suggestion.get("actions", []):
            check_action(action)
    for reason in card.get("overrideReasons", []):
        assert reason.get("code") and reason.get("display"), "override reasons carry a display"
    for link in card.get("links", []):
        # https, except the service's own pages as reached in tests (Starlette's TestClient is http://testserver)
        secure = link["url"].startswith(("https://", "http://testserver/"))
        assert link["label"] and secure and link["type"] in {"absolute", "smart"}
        assert "appContext" not in link or link["type"] == "smart"


def check_action(action: dict[str, Any]) -> None:
    assert action["type"] in ACTIONS and action["description"]
    if action["type"] in ("create", "update"):
        resource = action["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    else:
        assert action.get("resourceId"), "a delete names the resource it deletes"
