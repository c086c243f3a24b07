"""Over a real server (uvicorn on loopback): error answers keep the keep-alive connection open.

An exception that escapes to the ASGI server makes it drop the connection after the 500 (the EHR
then sees a reset on its next call). Every 4xx here is an answer of the service's own, so one
connection carries a series of bad requests and then a good one.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from cds_service.app import create_app
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture
from tests.fuzzing import CANARY, Deep, to_body

pytestmark = pytest.mark.slow  # a real server


@contextlib.contextmanager
def serve(app: Any) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def _urgent(**changes: Any) -> bytes:
    body = copy.deepcopy(load_fixture("urgent-new-paraparesis"))
    body.update(changes)
    return to_body(body)


def _broken_resource() -> bytes:
    body = copy.deepcopy(load_fixture("urgent-new-paraparesis"))
    body["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": ["Condition"], "code": {"text": {}}}})
    body["prefetch"]["observations"]["entry"] = [{"resource": Deep(1000, "coding", "1")}]
    return to_body(body)


BAD_CALLS: list[tuple[str, str, bytes, int]] = [
    ("POST", SERVICE_URL, b"{not json", 400),
    ("POST", SERVICE_URL, _urgent(hookInstance=f"{CANARY}\x00"), 400),
    ("POST", SERVICE_URL, _urgent(hook="order-sign"), 400),
    ("POST", SERVICE_URL, b'{"a":' * 2000 + b"1" + b"}" * 2000, 400),
    ("POST", f"/cds-services/{CANARY}", _urgent(), 404),
    ("GET", SERVICE_URL, b"", 405),
    ("POST", SERVICE_URL, b"x" * 300_000, 413),
    ("POST", SERVICE_URL, _urgent(prefetch={}), 412),
    ("POST", SERVICE_URL, _broken_resource(), 200),
    ("POST", f"{SERVICE_URL}/feedback", to_body({"feedback": [{"card": "c\x00", "outcome": "x"}]}), 400),
]


def test_one_connection_carries_bad_calls_then_a_good_one() -> None:
    app = create_app(Settings(max_body_bytes=200_000), clock=lambda: NOW, auth=NO_AUTH)
    with serve(app) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.connect()
        first_socket = connection.sock
        for method, url, body, status in BAD_CALLS + [("POST", SERVICE_URL, _urgent(), 200)]:
            connection.request(method, url, body=body or None, headers={"content-type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode()
            assert response.status == status, (url, text)
            assert response.getheader("connection", "").lower() != "close", (url, status)
            assert response.getheader("content-type", "").startswith("application/json")
            assert CANARY not in text
            assert connection.sock is first_socket, "the server dropped the connection"
        assert json.loads(text)["cards"][0]["indicator"] == "critical"
        connection.close()
