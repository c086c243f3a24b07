"""The browser harness itself: a page served by a live app renders in chromium, and requests are recorded."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import serve
from tests.conftest import NO_AUTH, NOW


def test_the_discovery_document_loads_in_chromium_with_no_request_elsewhere(browser_page: Any) -> None:
    from cds_service.app import create_app

    with serve(create_app(clock=lambda: NOW, auth=NO_AUTH)) as base:
        response = browser_page.goto(f"{base}/cds-services")
        assert response is not None and response.status == 200
        assert "ms-back-pain-patient-view" in browser_page.content()
    assert browser_page.requests_seen and all(url.startswith(base) for url in browser_page.requests_seen)
