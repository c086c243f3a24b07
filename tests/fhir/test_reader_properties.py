"""The readers are total over JSON: for any value of any shape, the typed decoder, parse_resource,
the relevance filter and read_prefetch answer (a resource, None, or a reason), never raise. Inputs are
the fixtures' and Synthea's resources mutated anywhere (tests/fuzzing.py), and arbitrary JSON.

When the typed decoder takes a mutated resource, fhir.resources reads its declared elements the same
way (the property test_typed_decoder.py checks on its own variants, here on hypothesis's). A
resource nested deeper than the 64-level limit is never read by fhir.resources, wherever the depth
is; the typed decoder reads only its declared elements, never deeper than they nest.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cds_service.clinical.relevance import RelevanceFilter
from cds_service.fhir.decode import decoded_resource, typed_resource
from cds_service.fhir.parse import parse_resource
from cds_service.fhir.prefetch import read_prefetch
from cds_service.fhir.schema import Resource
from cds_service.jsonlimits import MAX_DEPTH, nested_deeper_than
from cds_service.services.patient_data import WANTED_TYPES
from tests.conftest import NOW
from tests.fhir.test_typed_decoder import assert_reads_the_same
from tests.fuzzing import as_python, fuzz_examples, json_values, mutated, resource_seeds

PROPERTY = settings(
    max_examples=fuzz_examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    database=None,
)
RESOURCES = resource_seeds()
RELEVANCE = RelevanceFilter.from_value_sets()
resources = mutated(RESOURCES, max_mutations=4, request=False).map(as_python)
any_json = st.one_of(json_values, resources)


@PROPERTY
@given(raw=any_json)
def test_the_typed_decoder_is_total_and_never_wider_than_fhir_resources(raw: Any) -> None:
    if isinstance(raw, dict) and isinstance(raw.get("resourceType"), str):
        assert_reads_the_same(raw)
    else:
        assert not isinstance(raw, dict) or typed_resource(raw) is None


@PROPERTY
@given(raw=any_json)
def test_parse_resource_is_total(raw: Any) -> None:
    outcome = parse_resource(copy.deepcopy(raw))
    assert (outcome.resource is None) == (outcome.reason is not None)
    if outcome.resource is None:
        assert isinstance(outcome.reason, str) and len(outcome.reason) < 200


@PROPERTY
@given(raw=resources)
@example(  # found by the hook fuzzer: a coding.system that is an object, on a spinal-MRI report
    raw={
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": {"resourceType": "OperationOutcome"}, "code": "36400-0"}]},
    }
)
def test_the_relevance_filter_is_total(raw: dict[str, Any]) -> None:
    decoded = decoded_resource(raw) if isinstance(raw, dict) else None
    assert RELEVANCE.keep(decoded if decoded is not None else raw, NOW.date(), 90) in (True, False)


@PROPERTY
@given(raws=st.lists(resources | json_values, max_size=6), as_bundle=st.booleans())
def test_read_prefetch_is_total_and_keeps_only_wanted_types(raws: list[Any], as_bundle: bool) -> None:
    value = (
        {"resourceType": "Bundle", "entry": [{"resource": r} for r in raws]} if as_bundle else raws[0] if raws else {}
    )
    selector = RELEVANCE.selector(NOW.date(), 90)
    for select in (None, selector):
        data = read_prefetch({"k": value}, ["k"], "pv01-patient", WANTED_TYPES, select)
        assert set(data.resources) | set(data.unavailable) == {"k"}
        for resource in data.resources.get("k", []):
            assert resource.get_resource_type() in WANTED_TYPES


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.sampled_from(RESOURCES), levels=st.integers(MAX_DEPTH, 199), where=st.data())
def test_a_resource_nested_past_the_limit_is_never_read(raw: dict[str, Any], levels: int, where: Any) -> None:
    deep: Any = "x"
    for _ in range(levels):
        deep = {"coding": deep}
    resource = copy.deepcopy(raw)
    element = where.draw(st.sampled_from(sorted(k for k in resource if k != "resourceType")))
    resource[element] = deep
    if element != "subject":  # this patient's: skipped for its depth, not for another patient
        resource["subject"] = {"reference": "Patient/any"}
    assert nested_deeper_than(resource)
    assert parse_resource(resource).resource is None
    data = read_prefetch({"k": resource}, ["k"], "any", WANTED_TYPES)
    read = data.resources.get("k", [])
    # Only the typed decoder may read it: what it read is its declared elements, never the deep part.
    assert all(isinstance(r, Resource) and not nested_deeper_than(msgspec.to_builtins(r), 12) for r in read)
