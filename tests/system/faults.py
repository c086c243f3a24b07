"""Dependencies of our own for fault tests: a PostgreSQL cluster (initdb in a temporary folder, its
own port) and a redis-server (its own port), which the tests freeze (SIGSTOP), thaw (SIGCONT), stop
and restart. The machine's own PostgreSQL and Redis are never touched."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def unavailable(message: str) -> None:
    if os.environ.get("CI") == "true" or os.environ.get("CDS_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (CI: the fault tests must run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc), parents first."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        try:
            todo += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            pass
    return tree


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster of this test run only."""

    base: Path
    port: int
    user_prefix: list[str] = field(default_factory=list)  # runuser -u postgres -- (initdb refuses root)
    stopped_pids: list[int] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self.user_prefix, *args], check=True, capture_output=True, timeout=timeout)

    @classmethod
    def create(cls) -> OwnPostgres:
        initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
        if not initdb or not pg_ctl:
            unavailable("PostgreSQL server binaries (initdb, pg_ctl) not installed")
        base = Path(tempfile.mkdtemp(prefix="cds-own-pg-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(base, user.pw_uid, user.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        made = cls(base, free_port(), prefix)
        made._run(initdb, "-D", str(made.datadir), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        made.start()
        return made

    def start(self) -> None:
        pg_ctl = _pg_tool("pg_ctl")
        assert pg_ctl
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(pg_ctl, "-D", str(self.datadir), "-o", options, "-l", str(self.base / "server.log"), "-w", "start")

    def postmaster_pid(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def freeze(self) -> None:
        """SIGSTOP the postmaster first (no new backends), then every process it started."""
        postmaster = self.postmaster_pid()
        os.kill(postmaster, signal.SIGSTOP)
        self.stopped_pids = _process_tree(postmaster)
        for pid in self.stopped_pids[1:]:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.stopped_pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stopped_pids = []

    def stop(self) -> None:
        self.thaw()
        pg_ctl = _pg_tool("pg_ctl")
        assert pg_ctl
        if (self.datadir / "postmaster.pid").exists():
            self._run(pg_ctl, "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class OwnRedis:
    """A redis-server of this test run only (no persistence)."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def create(cls) -> OwnRedis:
        if not shutil.which("redis-server"):
            unavailable("redis-server not installed")
        made = cls(free_port())
        made.start()
        return made

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
