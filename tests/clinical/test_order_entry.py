"""order-select and order-sign: every row of RULES.md 3, as fixture requests with exact expectations
(which orders get a card, its indicator, and the action types of each suggestion), plus the
guarantees on the actions themselves and on bad order contexts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.cds_hooks_rules import check_response
from tests.conftest import ROOT

ORDER_FIXTURES = ROOT / "fixtures" / "order-entry"
EXPECTED: dict[str, Any] = json.loads((ORDER_FIXTURES / "expected.json").read_text())
URL = {"order-select": "/cds-services/ms-back-pain-order-select", "order-sign": "/cds-services/ms-back-pain-order-sign"}


def load(name: str) -> dict[str, Any]:
    return json.loads((ORDER_FIXTURES / f"{name}.json").read_text())


def _order_words(draft: dict[str, Any]) -> str:
    concept = draft.get("code") or draft.get("medicationCodeableConcept") or {}
    return concept.get("text") or next((c["display"] for c in concept.get("coding", []) if c.get("display")), "")


def _card_order(card: dict[str, Any], drafts: dict[str, dict[str, Any]]) -> str:
    """The draft a card speaks about: the one whose name its first line gives (never its id)."""
    lead = card["detail"].split("\n", 1)[0]
    assert not any(ref in lead or ref.split("/")[1] in lead for ref in drafts), "the text names no FHIR id"
    if len(drafts) == 1:
        return next(iter(drafts))
    (ref,) = [r for r, draft in drafts.items() if _order_words(draft) and f"({_order_words(draft)})" in lead]
    return ref


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_order_scenario(client: TestClient, name: str) -> None:
    request, expected = load(name), EXPECTED[name]
    response = client.post(URL[expected["hook"]], json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    check_response(body)
    drafts = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
        for e in request["context"]["draftOrders"]["entry"]
    }
    got = [
        {
            "indicator": card["indicator"],
            "order": _card_order(card, drafts),
            "suggestions": [[a["type"] for a in s["actions"]] for s in card.get("suggestions", [])],
        }
        for card in body["cards"]
    ]
    assert got == expected["cards"]
    for card in body["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] == "delete":
                    assert action["resourceId"] in drafts, "a delete names an existing draft"
                    assert action["resourceId"] == _card_order(card, drafts)
                if action["type"] == "update":
                    original = drafts[_card_order(card, drafts)]
                    updated = action["resource"]
                    assert updated["id"] == original["id"] and updated["resourceType"] == "ServiceRequest"
                    assert {k: v for k, v in updated.items() if k != "code"} == {
                        k: v for k, v in original.items() if k != "code"
                    }
                    assert updated["code"]["coding"][0]["code"] in {"24937-5", "24981-3", "36400-0"}
                if action["type"] == "create":
                    assert action["resource"]["resourceType"] == "ServiceRequest"
                    assert action["resource"]["code"]["coding"][0]["code"] in {"24937-5", "24981-3"}
            assert suggestion["label"]


def test_order_select_lumbar_xray_labels_say_what_happens(client: TestClient) -> None:
    body = client.post(URL["order-select"], json=load("lumbar-xray-by-text-and-body-site")).json()
    (card,) = body["cards"]
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == [
        "Add MRI cervical and thoracic spine without and with contrast",
        "Replace the lumbar X-ray with MRI cervical and thoracic spine without and with contrast",
    ]
    assert [s["isRecommended"] for s in card["suggestions"]] == [True, False]


def test_contrast_update_names_the_target_study(client: TestClient) -> None:
    (card,) = client.post(URL["order-select"], json=load("cervical-mri-without-contrast")).json()["cards"]
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Change this order to MRI cervical spine without and with contrast"
    assert [c["code"] for c in suggestion["actions"][0]["resource"]["code"]["coding"]] == ["24937-5", "72156"]


def test_the_same_patient_gives_the_same_facts_in_both_hooks(client: TestClient) -> None:
    """One code path: the order card lists exactly the patient-view card's evidence lines."""
    request = load("nsaid-with-cord-features")
    order_card = client.post(URL["order-select"], json=request).json()["cards"][0]
    pv_request = {k: v for k, v in copy.deepcopy(request).items()}
    pv_request["hook"] = "patient-view"
    pv_request["context"] = {k: v for k, v in request["context"].items() if k in ("userId", "patientId")}
    pv_card = client.post("/cds-services/ms-back-pain-patient-view", json=pv_request).json()["cards"][0]

    def evidence(detail: str) -> list[str]:
        why = detail.split("**Why**\n", 1)[1].split("\n\n", 1)[0]
        return why.splitlines()

    assert evidence(order_card["detail"]) == evidence(pv_card["detail"])
    assert len(evidence(pv_card["detail"])) == 3  # MS, back pain, spasticity
    assert pv_card["indicator"] == order_card["indicator"] == "warning"


# --- bad order contexts -------------------------------------------------------------------------


def _xray_request() -> dict[str, Any]:
    return copy.deepcopy(load("lumbar-xray-by-text-and-body-site"))


def test_selection_naming_no_draft_is_ignored_and_the_rest_decided(client: TestClient) -> None:
    body = _xray_request()
    body["context"]["selections"].append("MedicationRequest/does-not-exist")
    response = client.post(URL["order-select"], json=body)
    assert response.status_code == 200 and len(response.json()["cards"]) == 1


@pytest.mark.parametrize(
    "draft_orders", [[], "text", {"resourceType": "Patient"}, {"resourceType": "Bundle", "entry": "x"}]
)
def test_draft_orders_not_a_bundle_is_400(client: TestClient, draft_orders: Any) -> None:
    body = _xray_request()
    body["context"]["draftOrders"] = draft_orders
    response = client.post(URL["order-select"], json=body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_context"


@pytest.mark.parametrize("selections", [None, [], ["not-a-reference"], "ServiceRequest/os01-xr"])
def test_bad_selections_are_400(client: TestClient, selections: Any) -> None:
    body = _xray_request()
    if selections is None:
        del body["context"]["selections"]
    else:
        body["context"]["selections"] = selections
    response = client.post(URL["order-select"], json=body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_context"


def test_unknown_and_broken_draft_resources_are_tolerated(client: TestClient) -> None:
    body = _xray_request()
    entries = body["context"]["draftOrders"]["entry"]
    entries.append(
        {
            "resource": {
                "resourceType": "NutritionOrder",
                "id": "diet",
                "status": "draft",
                "intent": "order",
                "patient": {"reference": "Patient/os01-patient"},
                "dateTime": "2026-11-25",
            }
        }
    )
    entries.append({"resource": {"resourceType": "VisionPrescription", "id": "glasses"}})
    entries.append({"resource": {"resourceType": "ServiceRequest", "id": "broken", "status": 5}})
    entries.append({"resource": None})
    entries.append("not an entry")
    body["context"]["selections"] += ["NutritionOrder/diet", "ServiceRequest/broken"]
    response = client.post(URL["order-select"], json=body)
    assert response.status_code == 200
    assert [c["indicator"] for c in response.json()["cards"]] == ["warning"]


def test_draft_of_another_patient_is_ignored(client: TestClient) -> None:
    body = _xray_request()
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    response = client.post(URL["order-select"], json=body)
    assert response.status_code == 200 and response.json() == {"cards": []}


def test_wrong_hook_for_order_service_is_400(client: TestClient) -> None:
    body = _xray_request()
    body["hook"] = "patient-view"
    assert client.post(URL["order-select"], json=body).json()["error"] == "wrong_hook"
