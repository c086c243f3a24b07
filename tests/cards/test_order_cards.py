"""Order cards: the order named by what it asks for, MS and back pain told once when both the chart
and the order's reason carry them, and the new orders' reasons valid R4: chart Conditions in
`reasonReference`, evidence found on a draft order as `reasonCode`, never the client's draft id."""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi.testclient import TestClient

from tests.cards.scenarios import SERVICE, why_lines
from tests.conftest import ROOT

ORDERS = ROOT / "fixtures" / "order-entry"
SNOMED = "http://snomed.info/sct"
MS_REASON = {"coding": [{"system": SNOMED, "code": "24700007", "display": "Multiple sclerosis"}]}
LBP_REASON = {"coding": [{"system": SNOMED, "code": "279039007", "display": "Low back pain"}]}


def _load(name: str) -> dict[str, Any]:
    return json.loads((ORDERS / f"{name}.json").read_text())


def _cards(client: TestClient, request: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(SERVICE[request["hook"]], json=request)
    assert response.status_code == 200, response.text
    return response.json()["cards"]


def _created(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"] if a["type"] == "create"]


def test_lumbar_xray_card_names_the_order_by_what_it_is(client: TestClient) -> None:
    (card,) = _cards(client, _load("lumbar-xray-by-text-and-body-site"))
    assert card["detail"].split("\n\n")[:2] == [
        "The order (XR Lumbar spine 2-3 views) images **only the lumbar spine**; MS cord lesions are most often "
        "cervical and in the posterior columns, which it does not show.",
        "**Now:** add (or switch to) MRI cervical and thoracic spine without and with contrast.",
    ]
    delete = card["suggestions"][1]["actions"][0]
    assert delete == {
        "type": "delete",
        "description": "Remove the draft lumbar X-ray order (XR Lumbar spine 2-3 views)",
        "resourceId": "ServiceRequest/os01-xr",  # the id belongs in the action, not in the text
    }


def test_ms_and_back_pain_from_chart_and_order_reason_are_told_once(client: TestClient) -> None:
    request = copy.deepcopy(_load("lumbar-mri-loinc"))
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["reasonCode"] = [MS_REASON, LBP_REASON]
    (card,) = _cards(client, request)
    assert why_lines(card["detail"]) == [
        "- Multiple sclerosis (problem list, since 1 Mar 2016)",
        "- Low back pain (problem list, since 10 Nov 2026)",
    ]
    for order in _created(card):  # the chart's Conditions are the reasons; the draft's are said once, by code
        assert order["reasonReference"] == [{"reference": "Condition/os02-ms"}, {"reference": "Condition/os02-lbp"}]
        assert order["reasonCode"] == [
            {"text": "Multiple sclerosis", "coding": [MS_REASON["coding"][0]]},
            {"text": "Low back pain", "coding": [LBP_REASON["coding"][0]]},
        ]


def test_sandbox_style_order_reasons_become_reason_codes_never_the_draft_id(client: TestClient) -> None:
    request = _load("sandbox-style-lumbar-mri-cpt-reasons-only")
    (card,) = _cards(client, request)
    assert why_lines(card["detail"]) == [
        "- Multiple sclerosis (order reason, ordered 25 Nov 2026)",
        "- Low back pain (order reason, ordered 25 Nov 2026)",
    ]
    created = _created(card)
    assert len(created) == 2
    for order in created:
        assert "reasonReference" not in order
        assert [c["text"] for c in order["reasonCode"]] == ["Multiple sclerosis", "Low back pain"]
        assert [c["coding"][0]["code"] for c in order["reasonCode"]] == ["24700007", "279039007"]
        assert "os03-mri" not in json.dumps(order)


def test_a_condition_carried_only_in_the_draft_orders_is_not_referenced(client: TestClient) -> None:
    """A Condition that exists only in `draftOrders` may never be stored: it is named by code instead."""
    request = copy.deepcopy(_load("sandbox-style-lumbar-mri-cpt-reasons-only"))
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft.pop("reasonCode")
    draft["reasonReference"] = [{"reference": "Condition/draft-ms"}, {"reference": "Condition/draft-lbp"}]
    patient = request["context"]["patientId"]
    for cid, code in (("draft-ms", MS_REASON), ("draft-lbp", LBP_REASON)):
        request["context"]["draftOrders"]["entry"].append(
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": cid,
                    "subject": {"reference": f"Patient/{patient}"},
                    "code": code,
                }
            }
        )
    (card,) = _cards(client, request)
    for order in _created(card):
        assert "reasonReference" not in order
        assert [c["text"] for c in order["reasonCode"]] == ["Multiple sclerosis", "Low back pain"]
        assert "draft-ms" not in json.dumps(order) and "draft-lbp" not in json.dumps(order)


def test_analgesic_card_gives_management_for_the_mechanism_found(client: TestClient) -> None:
    (card,) = _cards(client, _load("nsaid-with-cord-features"))
    assert card["indicator"] == "warning"
    assert card["detail"].split("\n\n")[0] == (
        "The order (Ibuprofen 200 MG Oral Tablet) is an NSAID. Central neuropathic and paroxysmal MS pain often "
        "does not respond to NSAIDs or rest."
    )
    assert "- **Spasticity / painful spasms:** stretching, physiotherapy; baclofen or tizanidine." in card["detail"]
    assert "gabapentinoid" not in card["detail"]


def test_lumbar_imaging_card_has_no_management(client: TestClient) -> None:
    for card in _cards(client, _load("order-sign-all-drafts")):
        if card["summary"].startswith("Lumbar-only imaging"):
            assert "baclofen" not in card["detail"] and "Worth asking" not in card["detail"]
            return
    raise AssertionError("no lumbar imaging card")
