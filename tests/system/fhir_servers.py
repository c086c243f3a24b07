"""Real FHIR servers on loopback for the integration tests, and the CDS clients that fill prefetch.

* Medplum's FhirRouter + MemoryRepository (npm, integration/medplum/server.mjs): an open server.
* The Epic-rules wrapper (integration/epic_rules/epic_rules.py, uvicorn): the same router behind the
  search rules of Epic's FHIR server, and an Epic-shaped prefetch filler.
* Medplum's `buildCdsRequest` (integration/medplum/cds_request.mjs): a real CDS client's prefetch.

Without integration/medplum/node_modules the tests are skipped, unless CI=true, where a server that
cannot start is a failure.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
MEDPLUM_DIR = ROOT / "integration" / "medplum"
EPIC_RULES_DIR = ROOT / "integration" / "epic_rules"
FHIR_JSON = "application/fhir+json"
START_TIMEOUT_S = 60.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cannot_start(what: str, reason: str) -> None:
    prefix = "CI=true and " if in_ci() else ""
    pytest.fail(f"{prefix}the {what} could not start: {reason}")


def skip_without_medplum() -> None:
    if not (MEDPLUM_DIR / "node_modules").is_dir() and not in_ci():
        pytest.skip("integration/medplum/node_modules is absent (run `npm ci` there); CI is not 'true'")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start_medplum() -> tuple[subprocess.Popen[str], str]:
    """Medplum's FHIR router on a free loopback port: (process, FHIR base URL)."""
    node = shutil.which("node")
    if node is None:
        cannot_start("Medplum FHIR server", "no `node` on PATH")
        raise AssertionError("unreachable")
    port = free_port()
    proc = subprocess.Popen(
        [node, str(MEDPLUM_DIR / "server.mjs"), str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01))
        except queue.Empty:
            line = ""
        if line is None or remaining <= 0:
            stop(proc)
            cannot_start(
                "Medplum FHIR server",
                f"no 'listening' line within {START_TIMEOUT_S:g} s; output: {''.join(output)[-2000:]!r}",
            )
        if line:
            output.append(line)
            if line.strip() == f"listening {port}":
                return proc, f"http://127.0.0.1:{port}/fhir"


def start_epic_rules(upstream: str, token: str, count_cap: int) -> tuple[subprocess.Popen[str], str]:
    """The Epic-rules wrapper in front of `upstream`: (process, root URL; FHIR base is root + /fhir)."""
    port = free_port()
    env = {
        **os.environ,
        "UPSTREAM_FHIR_BASE": upstream,
        "EPIC_RULES_TOKEN": token,
        "EPIC_RULES_COUNT_CAP": str(count_cap),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(EPIC_RULES_DIR),
            "epic_rules:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            cannot_start("Epic-rules wrapper", f"exited with {proc.returncode}: {err[-2000:]!r}")
        try:
            if httpx.get(f"{root}/healthz", timeout=1).status_code == 200:
                return proc, root
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(proc)
    cannot_start("Epic-rules wrapper", f"no answer within {START_TIMEOUT_S:g} s")
    raise AssertionError("unreachable")


def put(http: httpx.Client, base: str, resource: dict[str, Any]) -> None:
    url = f"{base}/{resource['resourceType']}/{resource['id']}"
    r = http.put(url, json=resource, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
    assert r.status_code in (200, 201), (
        f"PUT {resource['resourceType']}/{resource['id']}: {r.status_code} {r.text[:500]}"
    )


def prefetch_resources(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    """Every resource of a request's prefetch."""
    out: list[dict[str, Any]] = []
    for value in (fixture.get("prefetch") or {}).values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            out += [
                e["resource"]
                for e in value.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
        else:
            out.append(value)
    return out


def medplum_cds_requests(
    fhir_base: str, service: dict[str, Any], contexts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The CDS requests Medplum's own client (`buildCdsRequest`) builds against `fhir_base`, one per context."""
    node = shutil.which("node")
    assert node is not None, "no `node` on PATH"
    calls = [
        {"context": c, "user": {"resourceType": "Practitioner", "id": c["userId"].split("/", 1)[1]}} for c in contexts
    ]
    payload = json.dumps({"fhirBase": fhir_base, "service": service, "calls": calls})
    done = subprocess.run(
        [node, str(MEDPLUM_DIR / "cds_request.mjs")],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"buildCdsRequest failed: {done.stderr[-2000:]}"
    requests: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(requests) == len(contexts)
    return requests


def epic_prefetch(root: str, templates: dict[str, str], context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The prefetch the Epic-shaped client fills: (values, keys left out)."""
    r = httpx.post(f"{root}/ehr/prefetch", json={"templates": templates, "context": context}, timeout=60)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    return body["prefetch"], body["leftOut"]
