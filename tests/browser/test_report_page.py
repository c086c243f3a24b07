"""The governance report in a real browser (Debian's chromium): with the admin token the page
renders with its SVG charts and loads nothing from anywhere (its own CSP allows no request);
without the token the answer is 401.

CDS_REPORT_SCREENSHOT=<path> also saves a full-page screenshot there (bench/report-screenshot.png
is made that way).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import random
from pathlib import Path
from typing import Any

import pytest

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.storage import (
    CardRecord,
    FeedbackRecord,
    StorageSettings,
    open_storage,
    record_feedback,
    record_issued_cards,
)
from tests.browser.conftest import serve
from tests.conftest import NO_AUTH

pytestmark = pytest.mark.slow

TOKEN = "admin-token-for-the-browser-test-41c7e2a9"
END = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
SERVICES = ("ms-back-pain-patient-view", "ms-back-pain-order-sign")
LEVELS = (("urgent", 0.15), ("cord-features", 0.35), ("baseline", 0.5))
REASONS = ("already-evaluated", "not-clinically-relevant", "patient-declined", "mri-contraindicated")
LABEL = "Order MRI cervical and thoracic spine without and with contrast"


async def _twelve_weeks(url: str) -> None:
    """~2,400 cards over twelve weeks, a third of them answered; override rates drifting up."""
    rng = random.Random(7)
    storage = await open_storage(StorageSettings(database_url=url, patient_hash_key="b" * 40))
    cards: list[CardRecord] = []
    answers: dict[str, list[FeedbackRecord]] = {s: [] for s in SERVICES}
    try:
        for n in range(2400):
            at = END - dt.timedelta(seconds=rng.random() * 84 * 86400)
            service = SERVICES[0] if rng.random() < 0.75 else SERVICES[1]
            level = rng.choices([lv for lv, _ in LEVELS], [w for _, w in LEVELS])[0]
            fatigue = rng.choices([None, "downgraded", "raised-again"], [0.88, 0.1, 0.02])[0]
            uuid = f"card-{n}"
            cards.append(
                CardRecord(
                    uuid,
                    service,
                    f"h{n}",
                    f"patient-{rng.randrange(300)}",
                    "warning",
                    level,
                    [],
                    at,
                    fatigue,
                    [(f"s-{n}", LABEL)],
                )  # fmt: skip
            )
            if rng.random() < 0.35:
                weeks_ago = (END - at).days / 7
                overridden = rng.random() < 0.75 - weeks_ago * 0.03
                when = at + dt.timedelta(minutes=rng.lognormvariate(2.5, 1.2))
                answers[service].append(
                    FeedbackRecord(uuid, "overridden", when, override_reason={"code": rng.choice(REASONS)})
                    if overridden
                    else FeedbackRecord(uuid, "accepted", when, accepted_suggestions=[f"s-{n}"])
                )
        await record_issued_cards(storage, cards)
        for service, items in answers.items():
            await record_feedback(storage, service, items)
    finally:
        await storage.close()


def _app(tmp_path: Path) -> Any:
    url = f"sqlite+aiosqlite:///{tmp_path / 'report.db'}"
    # Playwright's sync API keeps an event loop running in this thread: seed from another one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _twelve_weeks(url)).result()
    settings = Settings(admin_token=TOKEN)
    return create_app(
        settings=settings, auth=NO_AUTH, storage=StorageSettings(database_url=url, patient_hash_key="b" * 40)
    )


def test_the_report_renders_its_charts_and_loads_nothing_else(browser_page: Any, tmp_path: Path) -> None:
    console: list[str] = []
    browser_page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    with serve(_app(tmp_path)) as base:
        url = f"{base}/admin/report?since=2026-09-07&until=2026-11-29"
        browser_page.set_extra_http_headers({"Authorization": f"Bearer {TOKEN}"})
        response = browser_page.goto(url)
        assert response is not None and response.status == 200
        assert browser_page.title() == "CDS governance report"
        charts = browser_page.locator("svg.chart")
        assert charts.count() == 6  # two services x three levels
        assert browser_page.locator("svg.chart polyline").count() > 0
        assert browser_page.locator("svg.chart circle").count() > 0
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        # The stylesheet applied (allowed by its hash in the CSP): tables have borders.
        border = browser_page.evaluate("getComputedStyle(document.querySelector('td')).borderTopStyle")
        assert border == "solid"
        screenshot = os.environ.get("CDS_REPORT_SCREENSHOT")
        browser_page.screenshot(path=screenshot or str(tmp_path / "report.png"), full_page=True)

        browser_page.set_extra_http_headers({})
        denied = browser_page.goto(url)
        assert denied is not None and denied.status == 401
    assert browser_page.requests_seen and all(seen.startswith(base) for seen in browser_page.requests_seen)
    assert not [line for line in console if "Content Security Policy" in line], console
