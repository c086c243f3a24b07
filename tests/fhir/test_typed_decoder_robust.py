"""The typed reading path never fails a call on odd input: any JSON in any element of a resource,
in a Bundle's structure or as a whole prefetch value is read typed, read by fhir.resources, skipped
or reported unusable; and the body parser refuses what is not JSON. (Property-based: hypothesis.)"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.fhir.prefetch import read_prefetch, unusable_keys
from cds_service.fhir.schema import Resource
from cds_service.protocol.body import parse_json_object
from cds_service.services.patient_data import WANTED_TYPES
from tests.conftest import load_fixture

FIXTURE = load_fixture("urgent-new-paraparesis")
PATIENT = FIXTURE["context"]["patientId"]
KEYS = ("conditions", "observations", "imagingStudies", "medications")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, path + (i,))
    return out


def _read(prefetch: dict[str, Any]) -> None:
    body = parse_json_object(json.dumps({"prefetch": prefetch}).encode(), 64, frozenset({("prefetch",)}))
    data = read_prefetch(body["prefetch"], KEYS, PATIENT, WANTED_TYPES)
    unusable_keys(body["prefetch"], KEYS)
    for resource in data.all_resources():
        assert resource.get_resource_type() in WANTED_TYPES
        if isinstance(resource, Resource):
            assert resource.get_resource_type() != "Patient" or resource.id == PATIENT


@settings(max_examples=300, deadline=None)
@given(st.data(), json_values)
def test_any_value_anywhere_in_the_prefetch_is_read_or_refused_never_raised(data: Any, value: Any) -> None:
    prefetch = copy.deepcopy(FIXTURE["prefetch"])
    paths = [p for p in _paths(prefetch) if p]
    path = data.draw(st.sampled_from(paths))
    parent: Any = prefetch
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    _read(prefetch)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KEYS), json_values)
def test_any_value_as_a_whole_prefetch_key_is_read_or_refused(key: str, value: Any) -> None:
    prefetch = copy.deepcopy(FIXTURE["prefetch"])
    prefetch[key] = value
    _read(prefetch)


def test_a_number_out_of_range_is_refused_or_costs_its_key_never_a_crash() -> None:
    from fastapi.testclient import TestClient

    from cds_service.app import create_app
    from tests.conftest import NO_AUTH, NOW, SERVICE_URL

    client = TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH))
    text = json.dumps(FIXTURE)
    in_context = text.replace('"context": {', '"context": {"vendor": 1e400, ', 1)
    assert client.post(SERVICE_URL, content=in_context).json()["error"] == "invalid_json"
    conditions = copy.deepcopy(FIXTURE)
    conditions["prefetch"]["conditions"]["entry"][0]["resource"]["onsetAge"] = {"value": 7}
    in_resource = json.dumps(conditions).replace('"value": 7}', '"value": 1e400}', 1)
    response = client.post(SERVICE_URL, content=in_resource)
    assert response.status_code in (200, 412), response.text
