"""The guidance page over HTTP: self-contained (no script, no external asset; its only stylesheet is
inline and allowed by hash), the same bytes for everyone (no patient data), and the article's content."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient

from cds_service.cards.content import load_guidance_content

PATH = "/guidance/ms-back-pain"


def test_the_page_is_self_contained_and_its_css_is_allowed_by_hash(client: TestClient) -> None:
    response = client.get(PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    (css,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; ") and f"style-src 'sha256-{digest}'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script" not in html and " src=" not in html and "<link" not in html and "@import" not in css
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_the_page_holds_no_patient_data_and_may_be_cached(client: TestClient) -> None:
    first, second = client.get(PATH), client.get(PATH + "?patient=p1")
    assert first.content == second.content
    assert first.headers["cache-control"] == "public, max-age=3600"


def test_the_page_has_the_articles_content(client: TestClient) -> None:
    html = client.get(PATH).text
    guidance = load_guidance_content()
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", html)
    assert header is not None
    assert re.findall(r"<th scope=\"col\">(.*?)</th>", header.group(1)) == [
        "Feature",
        "MS-related back pain",
        "Mechanical / musculoskeletal back pain",
        "Radiculopathy (nerve root)",
    ]
    assert html.count('<tr><th scope="row">') == len(guidance.comparison.rows) == 6
    assert "<strong>Central neuropathic pain:</strong>" in html and "baclofen, tizanidine" in html
    assert "Immediate evaluation is reasonable when back pain comes with new neurological symptoms" in html
    assert '<a href="https://doi.org/10.1007/s00415-012-6579-2" rel="noopener noreferrer">' in html
    assert "[8, 9] Multiple Sclerosis Center (Stanford Health Care) <em>(no verified link)</em>" in html


def test_the_page_is_outside_client_authentication() -> None:
    """Clinicians open it from the card in a browser, with no CDS Hooks client token."""
    from cds_service.app import create_app
    from cds_service.security import AuthSettings
    from tests.conftest import NOW

    with TestClient(create_app(clock=lambda: NOW, auth=AuthSettings(mode="required"))) as client:
        assert client.get(PATH).status_code == 200
        assert client.post("/cds-services/ms-back-pain-patient-view", json={}).status_code == 401
