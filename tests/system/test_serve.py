"""`cds-service serve`: the listening socket it gives uvicorn, and a real multi-worker run."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cds_service.cli import ServeConfig

pytestmark = pytest.mark.slow  # multi-process / real-server: left out of the fast run (-m 'not slow')

ROOT = Path(__file__).resolve().parents[2]
SERVICE_URL = "/cds-services/ms-back-pain-patient-view"


def _nodelay_of_accepted_connection(listener: socket.socket) -> int:
    """Serve `listener` with asyncio (as a uvicorn worker does) and report TCP_NODELAY of one accepted connection."""

    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        try:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            value = await asyncio.wait_for(accepted, 5)
            writer.close()
            return value
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_the_shared_listening_socket_gives_keep_alive_connections_tcp_nodelay() -> None:
    """uvicorn's own multi-worker socket leaves Nagle on (a ~40 ms stall per keep-alive response);
    ServeConfig's socket does not."""
    sock = ServeConfig("cds_service.app:app", host="127.0.0.1", port=0).bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.get_inheritable()  # the workers receive it
        assert _nodelay_of_accepted_connection(sock) != 0
    finally:
        sock.close()
    # The check above can fail: the socket uvicorn itself would hand the workers gives 0.
    import uvicorn

    raw = uvicorn.Config("cds_service.app:app", host="127.0.0.1", port=0).bind_socket()
    try:
        if raw.proto == socket.IPPROTO_TCP:  # a uvicorn release with the fix: nothing to work around
            pytest.skip("this uvicorn already binds with IPPROTO_TCP")
        assert _nodelay_of_accepted_connection(raw) == 0
    finally:
        raw.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(pid: int) -> list[int]:
    """The worker processes of uvicorn's supervisor `pid` (spawned by multiprocessing; its resource
    tracker is another child, and not a worker)."""
    workers = []
    try:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            pass
    return workers


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker processes from /proc (Linux)")
def test_serve_with_two_workers_answers_on_keep_alive_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CDS_AUTH_MODE": "disabled",
        "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cds_service.cli",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--no-access-log",
            "--graceful-seconds",
            "5",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                if len(_workers(proc.pid)) >= 2:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert len(_workers(proc.pid)) == 2
        # Readiness from both workers: each fresh connection may land on either one.
        for _ in range(6):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/readyz")
            assert conn.getresponse().status == 200
            conn.close()
        # Several hook calls on one keep-alive connection (the fixture's dates are relative to the
        # test clock, so the card itself is not asserted here: a real clock runs this server).
        body = (ROOT / "fixtures" / "patient-view" / "urgent-new-paraparesis.json").read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(3):
            conn.request("POST", SERVICE_URL, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert isinstance(json.loads(response.read())["cards"], list)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
