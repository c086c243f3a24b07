#!/usr/bin/env python3
"""Soak: does the service's memory stay flat over thousands of real-shaped calls? One command:

    .venv/bin/python bench/soak.py                     # 3,000 calls, RSS every 250 calls (~2-4 minutes)
    .venv/bin/python bench/soak.py --calls 10000 --every 500 --connections 2

It starts the real service (`python -m cds_service.cli serve`, one worker, a fresh SQLite file,
client authentication off) and sends `patient-view` calls built from the Synthea R4 patients of
`../shared/data/synthea-r4/` (or `--synthea DIR`), each given what makes a chart "real-shaped" for
this service: multiple sclerosis, current low back pain, a new red flag (paraparesis) whose
Condition carries a `note` with an `authorReference`, and Synthea-style `dosageInstruction`
(`[{"sequence": 1, "asNeededBoolean": true}]`) on every MedicationRequest, plus an NSAID. Every
call must answer 200 with one card. The worker's resident memory (VmRSS of /proc/<pid>/status,
read from outside) is printed every `--every` calls, then the growth from the end of the 2nd
quarter (after warm-up) to the end.

`tests/system/test_soak.py` runs the same soak (fewer calls) and asserts that growth is small.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
SYNTHEA = REPO.parent / "shared" / "data" / "synthea-r4"
SERVICE_PATH = "/cds-services/ms-back-pain-patient-view"
HOOK_INSTANCE_PLACEHOLDER = b"00000000-0000-4000-8000-000000000000"
WANTED = {"Patient", "Condition", "Observation", "MedicationRequest", "ImagingStudy"}
OBSERVATION_CATEGORIES = {"vital-signs", "survey", "exam"}
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _condition(pid: str, rid: str, code: str, display: str, onset: dt.date, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"{pid}-{rid}",
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": f"{onset.isoformat()}T10:00:00Z",
        **extra,
    }


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def _observation_wanted(resource: dict[str, Any]) -> bool:
    codes = {c.get("code") for cat in resource.get("category") or [] for c in cat.get("coding") or []}
    return bool(codes & OBSERVATION_CATEGORIES)


def patient_view_request(bundle: dict[str, Any], today: dt.date) -> bytes:
    """One `patient-view` call for a Synthea patient, made real-shaped for this service (module docstring).
    The hookInstance is a placeholder that `SoakRun` replaces by a fresh UUID on every call."""
    resources = [copy.deepcopy(e["resource"]) for e in bundle.get("entry", []) if "resource" in e]
    resources = [r for r in resources if r.get("resourceType") in WANTED]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    pid = patient["id"]
    for resource in resources:  # Synthea's transaction bundles refer to the patient by urn:uuid
        if "subject" in resource:
            resource["subject"] = {"reference": f"Patient/{pid}"}
        if resource["resourceType"] == "MedicationRequest":
            resource["dosageInstruction"] = [{"sequence": 1, "asNeededBoolean": True}]
    conditions = [r for r in resources if r["resourceType"] == "Condition"]
    conditions += [
        _condition(pid, "ms", "24700007", "Multiple sclerosis", today - dt.timedelta(days=3000)),
        _condition(pid, "lbp", "279039007", "Low back pain", today - dt.timedelta(days=20)),
        _condition(
            pid,
            "paraparesis",
            "1845001",
            "Paraparesis",
            today - dt.timedelta(days=10),
            note=[
                {
                    "authorReference": {"reference": "Practitioner/soak-neurologist"},
                    "time": f"{(today - dt.timedelta(days=10)).isoformat()}T10:05:00Z",
                    "text": "New weakness of both legs since last week.",
                }
            ],
        ),
    ]
    medications = [r for r in resources if r["resourceType"] == "MedicationRequest"]
    medications.append(
        {
            "resourceType": "MedicationRequest",
            "id": f"{pid}-ibuprofen",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": "5640", "display": "Ibuprofen"}],
                "text": "Ibuprofen 600 MG Oral Tablet",
            },
            "subject": {"reference": f"Patient/{pid}"},
            "authoredOn": f"{(today - dt.timedelta(days=18)).isoformat()}T09:00:00Z",
            "dosageInstruction": [{"sequence": 1, "asNeededBoolean": True}],
        }
    )
    request = {
        "hook": "patient-view",
        "hookInstance": HOOK_INSTANCE_PLACEHOLDER.decode(),
        "context": {"userId": "Practitioner/soak-neurologist", "patientId": pid},
        "prefetch": {
            "patient": patient,
            "conditions": _searchset(conditions),
            "observations": _searchset(
                [r for r in resources if r["resourceType"] == "Observation" and _observation_wanted(r)]
            ),
            "imagingStudies": _searchset([r for r in resources if r["resourceType"] == "ImagingStudy"]),
            "medications": _searchset(medications),
            "medicationStatements": _searchset([]),
        },
    }
    return orjson.dumps(request)


def soak_requests(synthea: Path = SYNTHEA, today: dt.date | None = None, limit: int | None = None) -> list[bytes]:
    today = today or dt.datetime.now(dt.UTC).date()
    files = sorted(synthea.glob("*.json"))[:limit]
    if not files:
        raise FileNotFoundError(f"no Synthea patients in {synthea}")
    return [patient_view_request(orjson.loads(f.read_bytes()), today) for f in files]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limit_open_files(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@dataclass
class Service:
    """`cds-service serve` with one worker, in a process of its own (its pid is the worker's)."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
        timeout: float = 60.0,
        extra_args: list[str] | None = None,
        max_open_files: int | None = None,
    ) -> Service:
        port = free_port()
        env = {
            **os.environ,
            "CDS_AUTH_MODE": "disabled",
            "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'soak.db'}",
            "CDS_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log_path = workdir / "service.log"
        command = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--no-access-log"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--log-level", "warning", *(extra_args or [])],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=None if max_open_files is None else lambda: _limit_open_files(max_open_files),
            )
        service = cls(port, process, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("the service exited at start-up:\n" + log_path.read_text()[-3000:])
            try:
                if httpx.get(f"{service.base_url}/healthz", timeout=1).status_code == 200:
                    return service
            except httpx.HTTPError:
                time.sleep(0.2)
        service.stop()
        raise RuntimeError("the service did not start in time")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Sample:
    calls: int
    seconds: float
    rss_kib: int


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def rss_at(self, calls: int) -> int:
        """RSS of the first sample taken at or after `calls` calls."""
        return next(s.rss_kib for s in self.samples if s.calls >= calls)

    def growth_after_warm_up_kib(self) -> int:
        """RSS growth from the end of the 2nd quarter of the calls to the end."""
        total = self.samples[-1].calls
        return self.samples[-1].rss_kib - self.rss_at(total // 2)


def soak(
    service: Service, requests: list[bytes], calls: int, every: int, connections: int = 1, deadline_s: float = 1800
) -> Iterator[Sample | str]:
    """Send `calls` calls (round-robin over `requests`) over `connections` keep-alive connections;
    yield a Sample every `every` calls (and at 0 and the end), and a message for any failed call."""
    lock = threading.Lock()
    done = 0
    next_index = 0
    errors: list[str] = []
    stop_at = time.monotonic() + deadline_s

    def worker() -> None:
        nonlocal done, next_index
        with httpx.Client(base_url=service.base_url, timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    if next_index >= calls:
                        return
                    index, next_index = next_index, next_index + 1
                body = requests[index % len(requests)].replace(HOOK_INSTANCE_PLACEHOLDER, str(uuid.uuid4()).encode())
                try:
                    response = client.post(SERVICE_PATH, content=body, headers={"content-type": "application/json"})
                    cards = response.json().get("cards") if response.status_code == 200 else None
                    if response.status_code != 200 or not cards or len(cards) != 1:
                        with lock:
                            errors.append(f"call {index}: HTTP {response.status_code}, {response.text[:200]}")
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(f"call {index}: {type(exc).__name__}")
                with lock:
                    done += 1

    started = time.monotonic()
    yield Sample(0, 0.0, rss_kib(service.process.pid))
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    reported = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.05)
        while errors:
            yield errors.pop(0)
        if done - reported >= every:
            reported = done - done % every
            yield Sample(done, time.monotonic() - started, rss_kib(service.process.pid))
    while errors:
        yield errors.pop(0)
    if reported != done:
        yield Sample(done, time.monotonic() - started, rss_kib(service.process.pid))


def run_soak(calls: int, every: int, connections: int = 1, synthea: Path = SYNTHEA, echo: bool = False) -> SoakResult:
    requests = soak_requests(synthea)
    result = SoakResult()
    with tempfile.TemporaryDirectory(prefix="cds-soak-") as tmp:
        service = Service.start(Path(tmp))
        try:
            for item in soak(service, requests, calls, every, connections):
                if isinstance(item, Sample):
                    result.samples.append(item)
                    if echo:
                        rate = item.calls / item.seconds if item.seconds else 0.0
                        print(
                            f"{item.calls:>8} {item.seconds:>9.1f} {rate:>9.1f} {item.rss_kib / 1024:>9.1f}", flush=True
                        )
                else:
                    result.failures.append(item)
                    if echo:
                        print("FAILED", item, flush=True)
        finally:
            service.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250, help="print RSS every N calls")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--synthea", type=Path, default=SYNTHEA)
    args = parser.parse_args(argv)
    requests = soak_requests(args.synthea)
    sizes = sorted(len(r) for r in requests)
    print(f"{len(requests)} Synthea patients, bodies {sizes[0] // 1024}-{sizes[-1] // 1024} KiB", flush=True)
    print(f"{'calls':>8} {'seconds':>9} {'calls/s':>9} {'RSS MiB':>9}", flush=True)
    result = run_soak(args.calls, args.every, args.connections, args.synthea, echo=True)
    first, last = result.samples[0], result.samples[-1]
    print(
        f"RSS: start {first.rss_kib / 1024:.1f} MiB, after warm-up (call {last.calls // 2}) "
        f"{result.rss_at(last.calls // 2) / 1024:.1f} MiB, end {last.rss_kib / 1024:.1f} MiB; "
        f"growth after warm-up {result.growth_after_warm_up_kib() / 1024:+.1f} MiB; "
        f"failed calls: {len(result.failures)}"
    )
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
