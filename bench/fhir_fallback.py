#!/usr/bin/env python3
"""How long does a patient-view call take when the EHR sends NO prefetch and the service reads
everything from the FHIR server (concurrently, in one round)?

* starts a stub FHIR server on 127.0.0.1 (a small Starlette app under uvicorn, in a subprocess) that
  answers every search after --delay-ms (default 50 ms) with the data of
  fixtures/patient-view/urgent-new-paraparesis.json (or --source: any request file, e.g. a
  bench/data one), as searchset Bundles;
* runs the service in-process: `create_app(Settings(fhir_server_allowlist=[stub base]))`, called
  through httpx.ASGITransport (its start-up/shutdown run too), with client authentication disabled
  and the fixture's clock (2026-11-25T12:00Z);
* sends the fixture's request without `prefetch`, checks the answer (HTTP 200, the expected card),
  and prints the median wall time of a call against one round trip to the stub and against the sum
  of the same searches made one after another (measured, and as searches x round trip).

    .venv/bin/python bench/fhir_fallback.py                  # 30 calls, 50 ms per search
    .venv/bin/python bench/fhir_fallback.py --delay-ms 100 --calls 50
    .venv/bin/python bench/fhir_fallback.py --source bench/data/patient-view-1000.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
FIXTURE = REPO / "fixtures" / "patient-view" / "urgent-new-paraparesis.json"
SERVICE_PATH = "/cds-services/ms-back-pain-patient-view"
FIXTURE_NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

# Which prefetch value of the source request answers a search for which resource type.
TYPE_TO_KEY = {
    "Condition": "conditions",
    "Observation": "observations",
    "ImagingStudy": "imagingStudies",
    "MedicationRequest": "medications",
    "MedicationStatement": "medicationStatements",
}


# --- the stub FHIR server (subprocess) ---------------------------------------------------------


def stub_app(source: Path, delay_s: float) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    prefetch = json.loads(source.read_text(encoding="utf-8"))["prefetch"]
    patient = prefetch["patient"]
    stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}
    encoded: dict[str, bytes] = {}

    def bundle_for(resource_type: str, base: str) -> bytes:
        if resource_type not in encoded:
            value = prefetch.get(TYPE_TO_KEY.get(resource_type, ""), None)
            entries = []
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                entries = [
                    e for e in value.get("entry") or [] if e.get("resource", {}).get("resourceType") == resource_type
                ]
            body = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(entries),
                "link": [{"relation": "self", "url": f"{base}{resource_type}"}],
            }
            if entries:
                body["entry"] = entries
            encoded[resource_type] = json.dumps(body).encode()
        return encoded[resource_type]

    async def fhir(request: Request) -> Response:
        path = request.path_params["path"]
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            await asyncio.sleep(delay_s)
            base = str(request.base_url) + "fhir/"
            resource_type, _, rid = path.partition("/")
            if resource_type == "Patient" and rid:
                if rid != patient.get("id"):
                    return JSONResponse(
                        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]},
                        status_code=404,
                    )
                return Response(json.dumps(patient).encode(), media_type="application/fhir+json")
            if resource_type not in TYPE_TO_KEY:
                return JSONResponse(
                    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported"}]},
                    status_code=400,
                )
            wanted = parse_qs(urlsplit(str(request.url)).query).get("patient", [""])[0]
            if wanted not in (patient.get("id"), f"Patient/{patient.get('id')}"):
                empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
                return Response(json.dumps(empty).encode(), media_type="application/fhir+json")
            return Response(bundle_for(resource_type, base), media_type="application/fhir+json")
        finally:
            stats["in_flight"] -= 1

    async def stats_route(request: Request) -> Response:
        out = dict(stats)
        if request.query_params.get("reset"):
            stats.update(requests=0, max_in_flight=0)
        return JSONResponse(out)

    return Starlette(routes=[Route("/__stats", stats_route), Route("/fhir/{path:path}", fhir)])


def run_stub(port: int, source: Path, delay_ms: float) -> None:
    import uvicorn

    uvicorn.run(stub_app(source, delay_ms / 1000), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the measurement ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stub(source: Path, delay_ms: float) -> tuple[subprocess.Popen, str, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--stub",
            "--port",
            str(port),
            "--source",
            str(source),
            "--delay-ms",
            str(delay_ms),
        ],
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the stub FHIR server exited (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}/fhir", port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the stub FHIR server did not start")


def build_service(stub_base: str) -> Any:
    os.environ.setdefault("CDS_AUTH_MODE", "disabled")  # no client JWT in a bench call
    if "CDS_DATABASE_URL" not in os.environ:  # a fresh SQLite file of our own (the default is ./cds-service.db)
        (BENCH / "results").mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            (BENCH / "results" / f"fhir-fallback-cds.db{suffix}").unlink(missing_ok=True)
        os.environ["CDS_DATABASE_URL"] = f"sqlite+aiosqlite:///{BENCH / 'results' / 'fhir-fallback-cds.db'}"
    logging.getLogger("cds_service.security").setLevel(logging.ERROR)  # the "auth disabled" warning
    logging.getLogger("cds_service.storage").setLevel(logging.ERROR)  # the "development hash key" warning
    import inspect

    from cds_service.app import create_app
    from cds_service.settings import Settings

    kwargs: dict[str, Any] = {}
    if "clock" in inspect.signature(create_app).parameters:
        kwargs["clock"] = lambda: FIXTURE_NOW
    app = create_app(Settings(fhir_server_allowlist=[stub_base]), **kwargs)
    devnull = open(os.devnull, "w")
    for handler in logging.getLogger("cds_service").handlers:  # keep formatting the call log, drop the output
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    return app


async def measure(stub_base: str, stub_port: int, source: Path, calls: int, warmup: int) -> dict[str, Any]:
    import httpx

    app = build_service(stub_base)
    request = json.loads(source.read_text(encoding="utf-8"))
    request.pop("prefetch", None)
    request["fhirServer"] = stub_base
    body = json.dumps(request).encode()
    patient_id = request["context"]["patientId"]
    queries = {  # what the service asks for (the prefetch templates of its discovery answer)
        "conditions": f"Condition?patient={patient_id}",
        "observations": f"Observation?patient={patient_id}&category=survey,exam,vital-signs",
        "imagingStudies": f"ImagingStudy?patient={patient_id}&modality=http://dicom.nema.org/resources/ontology/DCM|MR",
        "medications": f"MedicationRequest?patient={patient_id}",
        "medicationStatements": f"MedicationStatement?patient={patient_id}",
    }
    headers = {"Content-Type": "application/json"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://service") as service,
            httpx.AsyncClient(base_url=stub_base + "/", timeout=10) as fhir,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{stub_port}", timeout=10) as admin,
        ):
            first = await service.post(SERVICE_PATH, content=body, headers=headers)
            if first.status_code != 200:
                raise SystemExit(f"the service answered HTTP {first.status_code}: {first.text[:500]}")
            cards = first.json().get("cards", [])
            for _ in range(warmup):
                await service.post(SERVICE_PATH, content=body, headers=headers)

            await admin.get("/__stats", params={"reset": 1})
            walls = []
            for _ in range(calls):
                t = time.perf_counter()
                r = await service.post(SERVICE_PATH, content=body, headers=headers)
                walls.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text[:300]
            stub_stats = (await admin.get("/__stats", params={"reset": 1})).json()

            rtts = []
            for _ in range(max(10, calls // 2)):  # one search, same keep-alive client
                t = time.perf_counter()
                (await fhir.get(queries["conditions"], headers={"Accept": "application/fhir+json"})).raise_for_status()
                rtts.append(time.perf_counter() - t)
            sequential = []
            for _ in range(max(5, calls // 5)):  # the same searches one after another
                t = time.perf_counter()
                for q in queries.values():
                    (await fhir.get(q, headers={"Accept": "application/fhir+json"})).raise_for_status()
                sequential.append(time.perf_counter() - t)
            concurrent = []
            for _ in range(max(5, calls // 5)):  # the same searches all at once, no service around them
                t = time.perf_counter()
                await asyncio.gather(
                    *(fhir.get(q, headers={"Accept": "application/fhir+json"}) for q in queries.values())
                )
                concurrent.append(time.perf_counter() - t)

            # The service's own processing of the same data when it comes as prefetch (no FHIR reads).
            with_prefetch = json.loads(source.read_text(encoding="utf-8"))
            pf_body = json.dumps(with_prefetch).encode()
            local = []
            for _ in range(max(5, calls // 3)):
                t = time.perf_counter()
                r = await service.post(SERVICE_PATH, content=pf_body, headers=headers)
                local.append(time.perf_counter() - t)
    return {
        "walls": walls,
        "cards": [c.get("indicator") for c in cards],
        "stub": stub_stats,
        "searches_per_call": stub_stats["requests"] / calls,
        "rtt": rtts,
        "sequential": sequential,
        "concurrent": concurrent,
        "with_prefetch": local,
        "n_queries": len(queries),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=50.0, help="stub latency per search")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--source", type=Path, default=FIXTURE, help="request file whose prefetch the stub serves")
    parser.add_argument("--stub", action="store_true", help=argparse.SUPPRESS)  # internal: run the stub server
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stub:
        run_stub(args.port, args.source, args.delay_ms)
        return 0

    proc, base, port = start_stub(args.source, args.delay_ms)
    try:
        r = asyncio.run(measure(base, port, args.source, args.calls, args.warmup))
    finally:
        proc.send_signal(signal.SIGTERM)  # the stub we started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    wall, rtt, seq = ms(r["walls"]), ms(r["rtt"]), ms(r["sequential"])
    n = r["n_queries"]
    src = args.source.relative_to(REPO) if args.source.is_relative_to(REPO) else args.source
    print(f"FHIR fallback, no prefetch: stub FHIR server answering each search after {args.delay_ms:g} ms with {src}")
    print(
        f"  service answer: HTTP 200, cards {r['cards']}; {r['searches_per_call']:g} searches per call, "
        f"at most {r['stub']['max_in_flight']} in flight at once"
    )
    print(
        f"  patient-view call, median of {len(r['walls'])}:       {wall:7.1f} ms  "
        f"(p90 {statistics.quantiles(r['walls'], n=10)[-1] * 1000:.1f} ms, min {min(r['walls']) * 1000:.1f} ms)"
    )
    print(f"  one round trip to the stub (1 search):     {rtt:7.1f} ms")
    print(f"  the {n} searches at once, no service:        {ms(r['concurrent']):7.1f} ms")
    print(
        f"  the {n} searches one after another:          {seq:7.1f} ms  (= {n} x {rtt:.1f} ms round trip: "
        f"{n * rtt:.1f} ms)"
    )
    print(f"  the same call with the data as prefetch:   {ms(r['with_prefetch']):7.1f} ms  (service processing only)")
    print(
        f"  => a no-prefetch call costs {wall / rtt:.2f} round trips ({wall - rtt:+.1f} ms over one), "
        f"{wall / seq * 100:.0f}% of the sequential sum"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
