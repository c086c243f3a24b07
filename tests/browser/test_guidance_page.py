"""The guidance page every card links to, in a real browser: it renders with its inline CSS (the CSP
allows exactly that stylesheet), the comparison table has its three columns, nothing is loaded from
outside, and on a phone it fits the screen without horizontal scrolling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cds_service.app import create_app
from tests.browser.conftest import serve
from tests.conftest import NO_AUTH, NOW

PATH = "/guidance/ms-back-pain"
COLUMNS = ["MS-related back pain", "Mechanical / musculoskeletal back pain", "Radiculopathy (nerve root)"]
SCREENSHOTS = Path(os.environ.get("CDS_TEST_SCREENSHOTS", "/tmp/cds-guidance-screenshots"))


def _console_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def test_guidance_page_renders_the_comparison_table_with_nothing_from_outside(browser_page: Any) -> None:
    errors = _console_errors(browser_page)  # a stylesheet refused by the CSP would be logged here
    with serve(create_app(clock=lambda: NOW, auth=NO_AUTH)) as base:
        response = browser_page.goto(f"{base}{PATH}")
        assert response is not None and response.status == 200
        headers = [th.inner_text().strip() for th in browser_page.locator("#comparison-table thead th").all()]
        rows = browser_page.locator("#comparison-table tbody tr").count()
        first_row = [
            td.inner_text().strip()
            for td in browser_page.locator("#comparison-table tbody tr").first.locator("td").all()
        ]
        text = browser_page.inner_text("body")
        # the inline stylesheet was applied (the table's header cells get their background from it)
        header_background = browser_page.eval_on_selector(
            "#comparison-table thead th", "th => getComputedStyle(th).backgroundColor"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=str(SCREENSHOTS / "guidance-desktop.png"), full_page=True)
    assert headers == ["Feature", *COLUMNS]
    assert rows == 6 and len(first_row) == 3
    assert first_row[0].startswith("Burning, dysesthetic")
    for section in ("Evaluate now / same day", "Red flags of spinal cord involvement", "Evaluation tips"):
        assert section in text
    assert "Management that matches the mechanism" in text and "baclofen" in text and "gabapentinoids" in text.lower()
    assert "patient-information article that summarises PubMed literature" in text
    assert header_background not in ("rgba(0, 0, 0, 0)", "transparent"), "the inline CSS was not applied"
    assert errors == []
    assert browser_page.requests_seen
    assert all(url.startswith(base) for url in browser_page.requests_seen), browser_page.requests_seen


def test_guidance_page_fits_a_phone_without_horizontal_scroll(browser_page: Any) -> None:
    browser_page.set_viewport_size({"width": 360, "height": 740})
    with serve(create_app(clock=lambda: NOW, auth=NO_AUTH)) as base:
        browser_page.goto(f"{base}{PATH}")
        widths = browser_page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth, view: window.innerWidth,"
            " body: document.body.scrollWidth})"
        )
        # on a phone each feature becomes a block, every cell labelled with its column
        label = browser_page.eval_on_selector(
            "#comparison-table tbody td", "td => getComputedStyle(td, '::before').content"
        )
        viewport = browser_page.eval_on_selector("meta[name=viewport]", "m => m.content")
        caption_width = browser_page.eval_on_selector(
            "#comparison-table caption", "c => c.getBoundingClientRect().width"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=str(SCREENSHOTS / "guidance-phone.png"), full_page=True)
    assert viewport == "width=device-width, initial-scale=1"
    assert widths["view"] == 360
    assert widths["scroll"] <= widths["view"] and widths["body"] <= widths["view"], widths
    assert label.strip('"') == COLUMNS[0]
    assert caption_width > 300, "the caption spans the screen (not squeezed to a letter per line)"
    assert all(url.startswith(base) for url in browser_page.requests_seen), browser_page.requests_seen
