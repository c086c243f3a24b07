"""`/docs` renders the API in a real browser from the service's own assets: nothing from outside."""

from __future__ import annotations

from typing import Any

from cds_service.app import create_app
from tests.browser.conftest import serve
from tests.conftest import NO_AUTH, NOW


def test_swagger_ui_renders_the_hook_endpoints_without_any_external_request(browser_page: Any) -> None:
    with serve(create_app(clock=lambda: NOW, auth=NO_AUTH)) as base:
        browser_page.goto(f"{base}/docs")
        browser_page.wait_for_selector(".opblock", timeout=15000)
        text = browser_page.inner_text("body")
        errors = browser_page.locator(".errors-wrapper").count()
    assert "/cds-services/{service_id}" in text
    assert "/cds-services/{service_id}/feedback" in text
    assert errors == 0
    assert browser_page.requests_seen
    assert all(url.startswith(base) for url in browser_page.requests_seen), browser_page.requests_seen
