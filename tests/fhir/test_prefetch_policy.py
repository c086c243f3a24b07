"""The prefetch policy (services/patient_data.py, fhir/policy.py): declared once, and everything derived
from it: discovery's `prefetch` and `usageRequirements`, the stages, what is read from the FHIR server,
and which failures are 412 (required) or done without (optional). Also the keys of real EHRs' shapes
(uncategorised Observations, radiology reports, procedures, the visit) and OperationOutcome entries."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.app import create_app
from cds_service.clinical.multiple_sclerosis import ms_findings
from cds_service.fhir.policy import Need, OnFailure, PrefetchKey, PrefetchPolicy
from cds_service.fhir.source import DataUnavailable
from cds_service.logs import call_log_fields
from cds_service.protocol.models import CdsRequest
from cds_service.services.patient_data import PREFETCH_POLICY, PatientData, PatientDataLoader
from cds_service.settings import Settings
from tests.conftest import NO_AUTH, NOW, SERVICE_URL, load_fixture
from tests.fhir.ehr_records import (
    imaging_procedure,
    outcome_entry,
    radiology_report,
    searchset,
    uncategorised_finding,
    visit,
)
from tests.fhir.fetchers import RecordingFetcher

WITH_MS = "urgent-observation-numbness"  # MS, back pain and two numbness Observations
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0}


def _complete(name: str = WITH_MS) -> dict[str, Any]:
    """The fixture with every policy key the context can fill sent (empty where it has none)."""
    body = load_fixture(name)
    for key in PREFETCH_POLICY.fill(body["context"]):
        body["prefetch"].setdefault(key, copy.deepcopy(EMPTY))
    return body


def _load(body: dict[str, Any], fetcher: Any = None) -> PatientData | None:
    loader = PatientDataLoader(fetcher or RecordingFetcher())
    request = CdsRequest.model_validate(body)
    return asyncio.run(loader.load(request, body["context"]["patientId"], lambda c: bool(ms_findings(c)[0])))


def _ids(data: PatientData | None) -> list[tuple[str, str]]:
    assert data is not None
    return [(r.get_resource_type(), r.id) for r in data.resources]


# --- the declaration and what discovery derives from it -----------------------------------------


def test_discovery_prefetch_and_usage_requirements_come_from_the_policy() -> None:
    with TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH)) as client:
        services = client.get("/cds-services").json()["services"]
    assert len(services) == 3
    for service in services:
        assert service["prefetch"] == PREFETCH_POLICY.templates()
        assert service["usageRequirements"] == PREFETCH_POLICY.usage_requirements()
    text = PREFETCH_POLICY.usage_requirements()
    for key in PREFETCH_POLICY.keys:
        assert key.describes in text
    needs, _, rest = text.partition(". Used when available")
    required = PREFETCH_POLICY.names(on_failure=OnFailure.REQUIRED)
    assert required == ("conditions", "observations", "imagingStudies")
    assert all(PREFETCH_POLICY.key(k).describes in needs for k in required)
    assert all(PREFETCH_POLICY.key(k).describes in rest for k in PREFETCH_POLICY.names(on_failure=OnFailure.OPTIONAL))
    assert "412" in text


def test_templates_stay_in_the_cds_hooks_prefetch_subset() -> None:
    """Reads by id, or type searches with reference / token parameters only (no modifiers)."""
    for key in PREFETCH_POLICY.keys:
        for template in filter(None, (key.query, key.when_refused)):
            path, _, query = template.partition("?")
            assert ":" not in "".join(p.split("=")[0] for p in query.split("&")), template
            if not query:
                assert path.count("/") == 1 and path.endswith("}}"), template


def test_the_observation_keys_work_on_both_kinds_of_server() -> None:
    observations, everything = PREFETCH_POLICY.key("observations"), PREFETCH_POLICY.key("allObservations")
    assert "category=" in observations.query  # accepted by servers that insist on a category or code
    assert everything.query == "Observation?patient={{context.patientId}}"  # what open servers hold uncategorised
    assert everything.on_failure is OnFailure.OPTIONAL  # refused (and left out) by such servers: done without
    assert everything.when_refused == observations.query  # read from such a server: retried with the category


def test_a_template_is_filled_only_with_fhir_ids() -> None:
    key = PrefetchKey("encounter", "Encounter/{{context.encounterId}}", Need.ONCE_RELEVANT, OnFailure.OPTIONAL, "x")
    assert key.fill({"encounterId": "e-1"}) is not None
    assert key.fill({"encounterId": "e-1"}).query == "Encounter/e-1"  # type: ignore[union-attr]
    for bad in (None, "", "a/b", "1&patient=2", 7, "x" * 65):
        assert key.fill({"encounterId": bad}) is None
    assert key.fill({}) is None


def test_keys_must_be_unique() -> None:
    key = PrefetchKey("a", "Condition?patient={{context.patientId}}", Need.ALWAYS, OnFailure.REQUIRED, "a")
    with pytest.raises(ValueError):
        PrefetchPolicy((key, key), relevant_when="once")


# --- failure meaning, derived per key ---------------------------------------------------------------


@pytest.mark.parametrize("key", [k.name for k in PREFETCH_POLICY.keys if k.name != "encounter"])
def test_a_key_that_cannot_be_had_is_412_when_required_and_done_without_when_optional(key: str) -> None:
    body = _complete()
    body["prefetch"][key] = None  # unknown (EHRs send null for a failed query): asked of the server
    fetcher = RecordingFetcher()  # the server has nothing either
    if PREFETCH_POLICY.key(key).on_failure is OnFailure.REQUIRED:
        with pytest.raises(DataUnavailable) as caught:
            _load(body, fetcher)
        assert list(caught.value.reasons) == [key]
    else:
        data = _load(body, fetcher)
        assert data is not None and data.missing_optional == {key}
        assert data.medications_assessed is (key != "medications")
    assert list(fetcher.queries) == [key]  # it was asked of the FHIR server first


def test_a_key_left_out_whose_narrower_form_was_sent_is_stood_in_for_without_reads() -> None:
    """Epic leaves out allObservations (its search refused); reading it would be refused and retried as
    `observations`, which the prefetch has: no reads, nothing missing, the same resources."""
    body = _complete()
    del body["prefetch"]["allObservations"]
    fetcher = RecordingFetcher()
    with call_log_fields() as noted:
        data = _load(body, fetcher)
    assert not fetcher.queries
    assert data is not None and not data.missing_optional
    assert _ids(data) == _ids(_load(_complete()))
    assert noted["stood_in"] == {"allObservations": "observations"}  # on the call's one log line


def test_a_key_left_out_with_its_narrower_form_missing_too_is_fetched_with_its_narrower_form() -> None:
    full = _complete()
    body = _complete()
    del body["prefetch"]["allObservations"]
    body["prefetch"]["observations"] = None
    fetcher = RecordingFetcher({k: full["prefetch"]["observations"] for k in ("observations", "allObservations")})
    data = _load(body, fetcher)
    assert fetcher.queries == {
        "observations": "Observation?patient=pv03-patient&category=survey,exam,vital-signs",
        "allObservations": "Observation?patient=pv03-patient",
    }
    assert fetcher.when_refused == {
        "allObservations": "Observation?patient=pv03-patient&category=survey,exam,vital-signs"
    }
    assert data is not None and not data.missing_optional
    assert _ids(data) == _ids(_load(full))  # the same Observations, each counted once


def test_a_null_optional_key_is_read_from_the_server_even_with_its_narrower_form_sent() -> None:
    """null is not "left out": the client tried and failed; the server may well answer."""
    body = _complete()
    pid = body["context"]["patientId"]
    body["prefetch"]["allObservations"] = None
    finding = uncategorised_finding(pid, "pv03-lhermitte", "2026-11-10", "Lhermitte sign on neck flexion")
    fetcher = RecordingFetcher({"allObservations": searchset([finding])})
    assert ("Observation", "pv03-lhermitte") in _ids(_load(body, fetcher))
    assert list(fetcher.queries) == ["allObservations"]


def test_optional_keys_are_never_worth_a_403() -> None:
    """Required data complete, optional keys left out, fhirServer not on the allowlist: the card, not 403."""
    body = _complete()
    for key in ("diagnosticReports", "procedures", "medicationStatements"):
        del body["prefetch"][key]
    body["fhirServer"] = "https://elsewhere.example.com/fhir"
    body["fhirAuthorization"] = {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "x",
        "subject": "c",
    }
    settings = Settings(fhir_server_allowlist=["https://ehr.example.org/fhir"])
    with TestClient(create_app(settings, clock=lambda: NOW, auth=NO_AUTH)) as client:
        answer = client.post(SERVICE_URL, json=body)
        del body["prefetch"]["imagingStudies"]
        refused = client.post(SERVICE_URL, json=body)
    assert answer.status_code == 200 and answer.json()["cards"]
    assert refused.status_code == 403


# --- the keys of real EHRs' shapes reach the rules --------------------------------------------------


def test_an_uncategorised_finding_arrives_through_the_optional_key_once() -> None:
    body = _complete()
    pid = body["context"]["patientId"]
    categorised = [e["resource"] for e in body["prefetch"]["observations"]["entry"]]
    finding = uncategorised_finding(pid, "pv03-lhermitte", "2026-11-10", "Lhermitte sign on neck flexion")
    body["prefetch"]["allObservations"] = searchset([*categorised, finding])  # an open server: all of them
    ids = _ids(_load(body))
    assert ("Observation", "pv03-lhermitte") in ids
    assert len(ids) == len(set(ids))  # the categorised ones came through both keys, and count once


def test_radiology_reports_procedures_and_the_visit_arrive() -> None:
    body = _complete()
    pid = body["context"]["patientId"]
    body["context"]["encounterId"] = "pv03-visit"
    body["prefetch"]["diagnosticReports"] = searchset([radiology_report(pid, "pv03-report", "2026-10-01")])
    body["prefetch"]["procedures"] = searchset([imaging_procedure(pid, "pv03-procedure", "2026-10-01")])
    body["prefetch"]["encounter"] = visit(pid, "pv03-visit", "2026-11-25")
    ids = _ids(_load(body))
    for expected in [
        ("DiagnosticReport", "pv03-report"),
        ("Procedure", "pv03-procedure"),
        ("Encounter", "pv03-visit"),
    ]:
        assert expected in ids


def test_without_encounter_id_the_encounter_key_is_neither_read_nor_missed() -> None:
    body = _complete()
    assert "encounterId" not in body["context"]
    body["prefetch"]["encounter"] = None  # what Medplum's client sends for a template it cannot fill
    fetcher = RecordingFetcher()
    data = _load(body, fetcher)
    assert data is not None and not data.missing_optional and not fetcher.queries


def test_with_encounter_id_a_visit_left_out_is_read_from_the_server() -> None:
    body = _complete()
    pid = body["context"]["patientId"]
    body["context"]["encounterId"] = "pv03-visit"
    fetcher = RecordingFetcher({"encounter": visit(pid, "pv03-visit", "2026-11-25")})
    data = _load(body, fetcher)
    assert fetcher.queries == {"encounter": "Encounter/pv03-visit"}
    assert ("Encounter", "pv03-visit") in _ids(data)


def test_a_visit_of_another_patient_is_ignored() -> None:
    body = _complete()
    body["context"]["encounterId"] = "other-visit"
    body["prefetch"]["encounter"] = visit("someone-else", "other-visit", "2026-11-25")
    assert ("Encounter", "other-visit") not in _ids(_load(body))


# --- OperationOutcome entries -------------------------------------------------------------------------


def test_outcome_entries_are_skipped_and_logged_without_phi(caplog: pytest.LogCaptureFixture) -> None:
    body = _complete()
    for key in ("conditions", "observations", "imagingStudies"):
        body["prefetch"][key].setdefault("entry", []).append(outcome_entry("information"))
    body["prefetch"]["diagnosticReports"] = searchset([], outcome_entry("warning", "not-found"))
    with caplog.at_level(logging.INFO):
        ids = _ids(_load(body))
    assert ids == _ids(_load(_complete()))
    logged = [r for r in caplog.records if "OperationOutcome entries skipped" in r.getMessage()]
    assert logged and sum(r.__dict__["count"] for r in logged) == 4
    assert "SECRET-PATIENT-ID" not in caplog.text


def test_an_error_outcome_entry_makes_the_key_unusable() -> None:
    body = _complete()
    body["prefetch"]["observations"]["entry"].append(outcome_entry("error", "processing"))
    with pytest.raises(DataUnavailable) as caught:
        _load(body)  # required, and no server to read it from
    assert list(caught.value.reasons) == ["observations"]
    full = _complete()
    fetcher = RecordingFetcher({"observations": full["prefetch"]["observations"]})
    assert _ids(_load(body, fetcher)) == _ids(_load(full))  # read again from the server instead
    body = _complete()
    body["prefetch"]["procedures"] = searchset([], outcome_entry("fatal", "exception"))
    data = _load(body)
    assert data is not None and data.missing_optional == {"procedures"}  # optional: done without


def test_over_http_a_left_out_optional_key_still_serves_the_card() -> None:
    body = _complete()
    del body["prefetch"]["allObservations"]
    del body["prefetch"]["procedures"]
    with TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH)) as client:
        partial = client.post(SERVICE_URL, json=body)
        full = client.post(SERVICE_URL, json=_complete())
        missing_required = copy.deepcopy(body)
        del missing_required["prefetch"]["imagingStudies"]
        refused = client.post(SERVICE_URL, json=missing_required)
    assert partial.status_code == 200 and partial.json()["cards"]
    assert [c["indicator"] for c in partial.json()["cards"]] == [c["indicator"] for c in full.json()["cards"]]
    assert refused.status_code == 412
    assert [d["prefetchKey"] for d in refused.json()["details"]] == ["imagingStudies"]
