"""The links and labels every card carries: the guidance page under the service's public base URL, the
article's references (a direct link only for what REFERENCES.md marks VERIFIED, with the link it
gives; a PubMed title search for the rest), an honest source label, override reasons by display."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote_plus

from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.cards.content import load_card_content
from cds_service.cards.links import card_links, override_reason_display
from cds_service.security import AuthSettings
from tests.conftest import NOW, ROOT, SERVICE_URL, SHARED, load_fixture

REFERENCES = (SHARED / "clinical" / "REFERENCES.md").read_text()
ORDER_SELECT = "/cds-services/ms-back-pain-order-select"


def _summary_rows() -> dict[str, tuple[str, str]]:
    """title -> (status, card link) from REFERENCES.md's summary table."""
    rows = {}
    for line in REFERENCES.split("\n---\n", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[\d, ]+", cells[0]):
            rows[cells[1]] = (cells[2], cells[3])
    return rows


def _order_fixture(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "fixtures" / "order-entry" / f"{name}.json").read_text())


def test_direct_links_are_exactly_the_verified_references() -> None:
    rows = _summary_rows()
    assert len(rows) == 8
    content = load_card_content()
    verified = {title: link for title, (status, link) in rows.items() if status.startswith("VERIFIED")}
    assert len(verified) == 3
    direct = {r.title: r.url for r in content.references.items if r.link == "direct"}
    assert len(direct) == 3
    for title, url in direct.items():
        (match,) = [t for t in verified if t.startswith(title.rstrip("."))]
        assert verified[match] == url
    for reference in content.references.items:  # every reference of the article is accounted for
        (row,) = [t for t in rows if t.split(" (")[0].rstrip(".") in reference.title or reference.title in t]
        assert rows[row][0].split(" ")[0] in reference.status


def test_links_guidance_first_then_direct_then_title_searches() -> None:
    content = load_card_content()
    links = card_links(content, "https://cds.example.org/guidance/ms-back-pain", None)
    assert [(link.label, link.url) for link in links] == [
        (
            "Full guidance: MS-related vs mechanical vs radicular back pain",
            "https://cds.example.org/guidance/ms-back-pain",
        ),
        (
            "Truini et al., J Neurol 2013: a mechanism-based classification of pain in MS",
            "https://doi.org/10.1007/s00415-012-6579-2",
        ),
        ("Neurol Neurochir Pol 2014: types of pain in MS (PubMed)", "https://pubmed.ncbi.nlm.nih.gov/25168327/"),
        (
            "Mayo Clinic: MS long-term health management (rehabilitation)",
            "https://www.mayoclinic.org/ar/medical-professionals/physical-medicine-rehabilitation/news/"
            "multiple-sclerosis-long-term-health-management-strategies/mac-20430514",
        ),
    ] + [
        (f"PubMed title search: {title}", "https://pubmed.ncbi.nlm.nih.gov/?term=" + quote_plus(title))
        for title in (
            "Pain in multiple sclerosis.",
            "Clinico-radiologic profile of spinal cord multiple sclerosis in adults.",
            "[A unusual manifestation of multiple sclerosis: sciatica].",
            "Multiple sclerosis and the spinal cord.",
        )
    ]
    assert all(link.type == "absolute" for link in links)


def test_the_source_label_says_what_the_source_is(client: TestClient) -> None:
    (card,) = client.post(SERVICE_URL, json=load_fixture("baseline-ms-back-pain")).json()["cards"]
    label = card["source"]["label"]
    assert label == "Patient-information article summarising PubMed literature (Persly Health Information, Feb 2026)"
    assert "PubMed-based" not in label and "url" not in card["source"]


def test_the_guidance_link_uses_the_public_base_url_setting() -> None:
    auth = AuthSettings(mode="disabled", public_base_url="https://cds.example.org/ms/")
    with TestClient(create_app(clock=lambda: NOW, auth=auth)) as client:
        for url, body in (
            (SERVICE_URL, load_fixture("urgent-new-paraparesis")),
            (ORDER_SELECT, _order_fixture("lumbar-mri-loinc")),
        ):
            (card,) = client.post(url, json=body).json()["cards"]
            assert card["links"][0]["url"] == "https://cds.example.org/ms/guidance/ms-back-pain"


def test_without_the_setting_the_guidance_link_is_where_the_call_came_in(client: TestClient) -> None:
    (card,) = client.post(SERVICE_URL, json=load_fixture("urgent-new-paraparesis")).json()["cards"]
    assert card["links"][0]["url"] == "http://testserver/guidance/ms-back-pain"
    assert client.get("/guidance/ms-back-pain").status_code == 200  # and it is served there


def test_override_reason_display_never_a_bare_code() -> None:
    content = load_card_content()
    system = "urn:ms-back-pain-cds:override-reason"
    assert override_reason_display(content, {"system": system, "code": "patient-declined"}) == "Patient declined"
    # our own display wins over whatever the client echoes back for our code
    assert override_reason_display(content, {"code": "already-evaluated", "display": "already-evaluated"}) == (
        "Already evaluated"
    )
    assert override_reason_display(content, {"system": "urn:ehr", "code": "x9", "display": "Seen today"}) == (
        "Seen today"
    )
    assert override_reason_display(content, {"system": "urn:ehr", "code": "x9"}) is None
    assert override_reason_display(content, None) is None
