"""The staged loading of services/patient_data.py: Conditions first, the rest of the record only
once MS is found; when the Conditions are missing, every missing key in one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from cds_service.clinical.multiple_sclerosis import ms_findings
from cds_service.fhir.source import DataUnavailable
from cds_service.protocol.models import CdsRequest
from cds_service.services.patient_data import PatientDataLoader
from tests.conftest import load_fixture
from tests.fhir.fetchers import RecordingFetcher

WITH_MS = "urgent-observation-numbness"  # MS, back pain and two numbness Observations


def _without_ms() -> dict[str, Any]:
    """The same patient with migraine where the MS diagnosis was."""
    body = load_fixture(WITH_MS)
    (condition,) = [e["resource"] for e in body["prefetch"]["conditions"]["entry"] if e["resource"]["id"] == "pv03-ms"]
    condition["code"] = {"text": "Migraine"}
    return body


def _load(body: dict[str, Any], fetcher: Any = None) -> tuple[Any, list[str]]:
    seen: list[str] = []

    def select(resource: Any) -> bool:
        seen.append(resource.get_resource_type())
        return True

    loader = PatientDataLoader(fetcher or RecordingFetcher({}))
    request = CdsRequest.model_validate(body)
    data = asyncio.run(loader.load(request, body["context"]["patientId"], lambda c: bool(ms_findings(c)[0]), select))
    return data, seen


def test_without_ms_only_the_conditions_are_read() -> None:
    body = _without_ms()
    assert body["prefetch"]["observations"]["entry"], "the fixture has Observations to leave unread"
    data, seen = _load(body)
    assert data is None
    assert set(seen) == {"Condition"}


def test_without_ms_broken_later_keys_do_not_matter() -> None:
    body = _without_ms()
    body["prefetch"]["observations"] = None
    body["prefetch"].pop("imagingStudies")
    data, _ = _load(body)
    assert data is None  # no 412: nothing but the Conditions was needed


def test_with_ms_the_whole_record_is_read_in_key_order() -> None:
    data, seen = _load(load_fixture(WITH_MS))
    assert data is not None and data.medications_assessed
    assert set(seen) == {"Condition", "Observation"}
    types = [r.get_resource_type() for r in data.resources]
    order = [
        "Condition",
        "Observation",
        "ImagingStudy",
        "DiagnosticReport",
        "Procedure",
        "Encounter",
        "MedicationRequest",
        "MedicationStatement",
    ]
    assert types == sorted(types, key=order.index)


def test_with_ms_a_missing_required_key_is_412() -> None:
    body = load_fixture(WITH_MS)
    body["prefetch"]["imagingStudies"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    fetcher = RecordingFetcher({})
    fetcher.fetch = _refuse  # type: ignore[method-assign]
    try:
        _load(body, fetcher)
    except DataUnavailable as exc:
        assert list(exc.reasons) == ["imagingStudies"]
    else:
        raise AssertionError("expected DataUnavailable")


async def _refuse(
    queries: Mapping[str, str],
    fhir_server: str | None,
    access_token: str | None,
    when_refused: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    raise DataUnavailable({key: "refused" for key in queries})


def test_missing_conditions_are_read_with_every_other_missing_key_in_one_round_trip() -> None:
    full = load_fixture(WITH_MS)["prefetch"]
    body = load_fixture(WITH_MS)
    del body["prefetch"]["conditions"]
    body["prefetch"]["observations"] = None
    fetcher = RecordingFetcher(full)
    data, _ = _load(body, fetcher)
    # The keys the fixture never sent (medicationStatements and the optional keys of real EHRs' shapes)
    # are asked for in the same round trip, and stay unavailable: optional, so decided without.
    assert fetcher.calls == [
        sorted(
            [
                "conditions",
                "observations",
                "allObservations",
                "diagnosticReports",
                "procedures",
                "medicationStatements",
            ]
        )
    ]
    assert data is not None
    expected, _ = _load(load_fixture(WITH_MS))
    assert [(r.get_resource_type(), r.id) for r in data.resources] == [
        (r.get_resource_type(), r.id) for r in expected.resources
    ]
