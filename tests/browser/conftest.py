"""A real browser for the pages the service serves: Debian's chromium driven by Playwright.

`live_app(app)` serves an ASGI app on a free loopback port (uvicorn in a thread) and yields its base
URL; `browser_page` is a fresh chromium page whose every request is recorded in `page.requests_seen`,
so a test can prove a page loads nothing from outside. Without chromium the tests skip, except in CI
(`CDS_TEST_REQUIRE_BROWSER=1`, set by .ci/run), where a missing browser fails them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is slow (left out of `-m "not slow"`), whatever its module says."""
    for item in items:
        if Path(str(item.fspath)).resolve().parent == HERE:
            item.add_marker(pytest.mark.slow)


CHROMIUM = os.environ.get("CDS_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _require_browser() -> str:
    if CHROMIUM is None:
        if os.environ.get("CDS_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (CDS_TEST_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return CHROMIUM


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 on a free port for the duration of the block; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture
def live_app() -> Callable[[Any], contextlib.AbstractContextManager[str]]:
    return serve


@pytest.fixture(scope="module")  # Playwright's sync API holds an event loop while it runs: not past this module
def chromium() -> Iterator[Any]:
    executable = _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A fresh page; `page.requests_seen` lists the URL of every request it made."""
    context = chromium.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.requests_seen = seen
    try:
        yield page
    finally:
        context.close()
