"""Integration: one configuration, two kinds of real server, the same decisions.

* An open server: Medplum's FHIR router (findings may have no category at all), with its own CDS
  client (`buildCdsRequest`) filling the prefetch.
* An Epic-shaped server: the same router behind integration/epic_rules (Observation searches need a
  category or a code, `_count` capped so results come in pages, OperationOutcome entries in every
  searchset, a refused prefetch key left out), with its prefetch filler.

Each chart is decided through the client's prefetch (with fhirServer for what is missing) and through
FHIR reads alone, on both servers: the answers are the same. On the open server the chart's findings
are stored without a category, and the optional `allObservations` key is what catches them; on the
Epic-shaped one they have the category Epic would give them. Radiology reports, imaging procedures
and the visit (Encounter of context.encounterId) are shown to reach the resources the rules get.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.fhir.client import FhirSearchClient
from cds_service.protocol.models import CdsRequest
from cds_service.services.patient_data import PREFETCH_POLICY, PatientDataLoader
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, expected_outcomes, load_fixture
from tests.fhir.ehr_records import (
    imaging_procedure,
    radiology_report,
    uncategorised_chief_complaint,
    uncategorised_finding,
    visit,
)
from tests.system.fhir_servers import (
    FHIR_JSON,
    epic_prefetch,
    medplum_cds_requests,
    prefetch_resources,
    put,
    skip_without_medplum,
    start_epic_rules,
    start_medplum,
    stop,
)

pytestmark = pytest.mark.slow  # real servers in other processes

TOKEN = "integration-token"
AUTH = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
COUNT_CAP = 5  # the Epic-shaped server's page size: most searches here take several pages
DEADLINE_S = 10.0  # generous: two processes on two shared cores; speed is measured in bench/, not here
SERVICE_ID = "ms-back-pain-patient-view"
EXAM = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]}


@dataclass(frozen=True)
class Case:
    fixture: str
    extras: Callable[[str], list[dict[str, Any]]]  # patient id -> resources added to the fixture's
    expected: str | None  # the card's indicator ("" for no card); None: the rules' own (other tests)
    encounter: str | None = None  # context.encounterId (the visit among the extras)
    without_all_observations: str | None = None  # the indicator when the uncategorised findings are missed
    # The fixture's "pvNN-" ids are renamed per server (one Medplum holds every chart of both servers).
    open_prefix: str = "xo"
    epic_prefix: str = "xe"


def _no_extras(pid: str) -> list[dict[str, Any]]:
    return []


def _fixture_cases() -> dict[str, Case]:
    """Every fixture patient as it is, with the card expected.json gives it."""
    cases = {}
    for name, expected in expected_outcomes().items():
        # The level its data gives (for a fixture whose prefetch is meant to fail, once the data is read).
        level = expected.get("level")
        indicator = None if level is None else "" if level == "none" else expected.get("indicator")
        cases[f"fixture:{name}"] = Case(name, _no_extras, indicator, open_prefix="pv", epic_prefix="ep")
    return cases


def _paging_conditions(pid: str) -> list[dict[str, Any]]:
    """30 resolved, clinically irrelevant Conditions: long enough to take pages on both servers."""
    return [
        {
            "resourceType": "Condition",
            "id": f"{pid}-old-{i:02d}",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}], "text": "Hypertension"},
            "subject": {"reference": f"Patient/{pid}"},
            "recordedDate": "2010-01-01",
        }
        for i in range(30)
    ]


CASES = {
    # Lhermitte's sign kept as an uncategorised "Symptom" Observation: a cord feature (warning, not info).
    "lhermitte-uncategorised": Case(
        "baseline-ms-back-pain",
        lambda pid: [uncategorised_finding(pid, f"{pid}-lhermitte", "2026-11-10", "Lhermitte sign on neck flexion")],
        expected="warning",
        without_all_observations="info",
    ),
    # The chief complaint kept as an uncategorised Observation: the only back-pain evidence.
    "chief-complaint-uncategorised": Case(
        "no-card-ms-without-back-pain",
        lambda pid: [uncategorised_chief_complaint(pid, f"{pid}-complaint", "2026-11-20", "Low back pain, 3 weeks")],
        expected=None,
        without_all_observations="",
    ),
    # Imaging as a radiology report and a procedure, and the visit whose reason is back pain.
    "reports-procedures-visit": Case(
        "baseline-dual-cause-mechanical",
        lambda pid: [
            radiology_report(pid, f"{pid}-mri-report", "2026-10-01"),
            imaging_procedure(pid, f"{pid}-mri-procedure", "2026-10-01"),
            visit(pid, f"{pid}-visit", "2026-11-25"),
        ],
        expected=None,
        encounter="visit",
    ),
    # A long problem list: pages on both servers (20 on Medplum, COUNT_CAP behind the Epic rules).
    "paging": Case("urgent-new-paraparesis", _paging_conditions, expected="critical"),
    **_fixture_cases(),
}


@dataclass(frozen=True)
class Chart:
    context: dict[str, Any]
    resources: list[dict[str, Any]]


def _chart(case: Case, epic: bool) -> Chart:
    """The case's chart, as the open server keeps it, or (`epic`) as Epic would: findings with the
    category Epic gives them. Ids are renamed per server and case kind, so that one Medplum holds all."""
    body = load_fixture(case.fixture)
    pid = body["context"]["patientId"]
    resources = prefetch_resources(body) + case.extras(pid)
    context = dict(body["context"])
    if case.encounter:
        context["encounterId"] = f"{pid}-{case.encounter}"
    prefix = pid.split("-", 1)[0]  # "pvNN"
    new_prefix = (case.epic_prefix if epic else case.open_prefix) + prefix[2:]
    context, resources = json.loads(json.dumps([context, resources]).replace(prefix + "-", new_prefix + "-"))
    if epic:
        for r in resources:
            if r["resourceType"] == "Observation" and not r.get("category"):
                r["category"] = [EXAM]
    return Chart(context, resources)


@dataclass(frozen=True)
class Servers:
    open_base: str  # Medplum's FHIR base
    epic_root: str  # the wrapper's root; its FHIR base is epic_root + "/fhir"

    @property
    def epic_base(self) -> str:
        return self.epic_root + "/fhir"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    procs: list[subprocess.Popen[str]] = []
    base = os.environ.get("FHIR_BASE_URL", "").rstrip("/")
    try:
        if not base:
            skip_without_medplum()
            proc, base = start_medplum()
            procs.append(proc)
        proc, epic_root = start_epic_rules(base, TOKEN, COUNT_CAP)
        procs.append(proc)
        with httpx.Client(timeout=30) as http:
            for case in CASES.values():
                for epic in (False, True):
                    for resource in _chart(case, epic).resources:
                        put(http, base, resource)
        yield Servers(base, epic_root)
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="module")
def service(servers: Servers) -> Iterator[TestClient]:
    settings = Settings(fhir_server_allowlist=[servers.open_base, servers.epic_base], fhir_deadline_seconds=DEADLINE_S)
    with TestClient(create_app(settings, clock=lambda: NOW, auth=NO_AUTH)) as client:
        yield client


@pytest.fixture(scope="module")
def medplum_prefetch(servers: Servers, service: TestClient) -> dict[str, dict[str, Any]]:
    """Each case's prefetch as Medplum's own CDS client fills it from the open server (one node run)."""
    names = sorted(CASES)
    contexts = [_chart(CASES[name], epic=False).context for name in names]
    built = medplum_cds_requests(servers.open_base, _descriptor(service), contexts)
    return {name: request["prefetch"] for name, request in zip(names, built, strict=True)}


def _descriptor(client: TestClient) -> dict[str, Any]:
    services = client.get("/cds-services").json()["services"]
    descriptor: dict[str, Any] = next(s for s in services if s["id"] == SERVICE_ID)
    return descriptor


def _call(client: TestClient, context: dict[str, Any], prefetch: dict[str, Any] | None, server: str | None) -> Any:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    if server is not None:
        body["fhirServer"] = server
        body["fhirAuthorization"] = dict(AUTH)
    response = client.post(SERVICE_URL, json=body)
    assert response.status_code == 200, response.text
    return _normalise(response.json())


def _normalise(body: Any) -> Any:
    """Drop what is generated per call (uuids, ServiceRequest ids and times) and the patient's own ids,
    which differ between the two servers' copies of a chart."""
    out = json.loads(re.sub(r"\b(?:ep|xo|xe)(\d{2})-", r"pv\1-", json.dumps(body)))

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(x) for x in node]
        if isinstance(node, dict):
            kept = {k: clean(v) for k, v in node.items() if k != "uuid"}
            if kept.get("resourceType") == "ServiceRequest":
                kept.pop("id", None)
                kept.pop("authoredOn", None)
            return kept
        return node

    return clean(out)


def _indicator(answer: Any) -> str:
    return "".join(card["indicator"] for card in answer["cards"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_same_chart_gets_the_same_decision_on_both_servers_by_prefetch_and_by_reads(
    servers: Servers, service: TestClient, medplum_prefetch: dict[str, dict[str, Any]], name: str
) -> None:
    case = CASES[name]
    descriptor = _descriptor(service)
    open_chart, epic_chart = _chart(case, epic=False), _chart(case, epic=True)

    # The open server, its own CDS client filling the prefetch (first pages only).
    built = {"prefetch": medplum_prefetch[name]}
    assert set(built["prefetch"]) == set(PREFETCH_POLICY.templates())
    answers = {
        "open, prefetch": _call(service, open_chart.context, built["prefetch"], servers.open_base),
        "open, FHIR reads": _call(service, open_chart.context, None, servers.open_base),
    }
    # The Epic-shaped server: the unqualified Observation key is refused and left out.
    values, left_out = epic_prefetch(servers.epic_root, descriptor["prefetch"], epic_chart.context)
    assert "allObservations" in left_out and "allObservations" not in values
    assert ("encounter" in left_out) is ("encounterId" not in epic_chart.context)
    answers["Epic, prefetch"] = _call(service, epic_chart.context, values, servers.epic_base)
    answers["Epic, FHIR reads"] = _call(service, epic_chart.context, None, servers.epic_base)
    if not any(v and any(link.get("relation") == "next" for link in v.get("link", [])) for v in values.values()):
        # Every key fits Epic's first page: its prefetch alone decides, the left-out key done without.
        answers["Epic, prefetch only"] = _call(service, epic_chart.context, values, None)

    reference = answers["open, prefetch"]
    for how, answer in answers.items():
        assert answer == reference, f"{name}: {how} differs from the open server's prefetch"
    if case.expected is not None:
        assert _indicator(reference) == case.expected
    if case.without_all_observations is not None:
        # The category-qualified key alone misses the uncategorised finding: the optional key caught it.
        partial = {k: v for k, v in built["prefetch"].items() if k != "allObservations"}
        assert _indicator(_call(service, open_chart.context, partial, None)) == case.without_all_observations
        assert _indicator(reference) != case.without_all_observations


def test_reports_procedures_and_the_visit_reach_the_rules_from_both_servers(servers: Servers) -> None:
    case = CASES["reports-procedures-visit"]

    async def resources(base: str, chart: Chart, prefetch: dict[str, Any] | None) -> set[tuple[str, str]]:
        """What the loader hands the rules; every key had (on the Epic-shaped server, the refused
        unqualified Observation search retried with its category)."""
        async with httpx.AsyncClient(timeout=DEADLINE_S) as http:
            loader = PatientDataLoader(FhirSearchClient(http, [base], deadline_seconds=DEADLINE_S))
            request = CdsRequest.model_validate(
                {
                    "hook": "patient-view",
                    "hookInstance": str(uuid.uuid4()),
                    "context": chart.context,
                    "prefetch": prefetch,
                    "fhirServer": base,
                    "fhirAuthorization": AUTH,
                }
            )
            data = await loader.load(request, chart.context["patientId"], has_ms=lambda conditions: True)
        assert data is not None and data.missing_optional == frozenset(), data.missing_optional
        return {(r.get_resource_type(), r.id) for r in data.resources}

    for base, epic in ((servers.open_base, False), (servers.epic_base, True)):
        chart = _chart(case, epic)
        pid = chart.context["patientId"]
        expected = {
            ("DiagnosticReport", f"{pid}-mri-report"),
            ("Procedure", f"{pid}-mri-procedure"),
            ("Encounter", f"{pid}-visit"),
        }
        prefetch = epic_prefetch(servers.epic_root, PREFETCH_POLICY.templates(), chart.context)[0] if epic else None
        for given in (None, prefetch):
            found = asyncio.run(resources(base, chart, copy.deepcopy(given)))
            assert expected <= found, f"{base} {'prefetch' if given else 'reads'}: {expected - found}"


def test_the_epic_rules_wrapper_applies_epics_search_rules(servers: Servers) -> None:
    pid = _chart(CASES["paging"], epic=True).context["patientId"]
    headers = {"Accept": FHIR_JSON, "Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=30, headers=headers) as http:
        refused = http.get(f"{servers.epic_base}/Observation?patient={pid}")
        assert refused.status_code == 400
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert http.get(f"{servers.epic_base}/Observation?patient={pid}&category=exam").status_code == 200
        assert httpx.get(f"{servers.epic_base}/Condition?patient={pid}").status_code == 401  # no token
        url: str | None = f"{servers.epic_base}/Condition?patient={pid}"
        pages, ids = 0, []
        while url is not None:
            assert url.startswith(servers.epic_base + "/"), url  # links point at the wrapper, not upstream
            bundle = http.get(url).json()
            entries = bundle["entry"]
            outcomes = [e for e in entries if e.get("search", {}).get("mode") == "outcome"]
            assert len(outcomes) == 1 and outcomes[0]["resource"]["resourceType"] == "OperationOutcome"
            matches = [e for e in entries if e not in outcomes]
            assert len(matches) <= COUNT_CAP
            ids += [e["resource"]["id"] for e in matches]
            pages += 1
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    assert len(ids) == len(set(ids)) == 33 and pages == 7
