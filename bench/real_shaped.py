#!/usr/bin/env python3
"""Real-shaped patient-view requests: Synthea charts (../shared/data/synthea-r4/) with MS, back pain
and a red flag added.

The Observations, Conditions and MedicationRequests are Synthea's own, unchanged but for the subject
(written `Patient/<id>` as an EHR's search returns it) and, when a size needs more than the 40
charts hold, an id suffix and dates moved back by whole years (so a repeat is an older visit of the
same shape). The observations are those the service's prefetch asks for (categories vital-signs,
survey and exam: Synthea's vital signs, pain scores and questionnaires). Added to the chart: multiple
sclerosis since 2015 (SNOMED 24700007 + ICD-10-CM G35), low back pain 36 days before the anchor
date and a new paraparesis 15 days before it, so every request should give one **critical** card.

    .venv/bin/python bench/real_shaped.py --sizes 100 1000 10000     # -> bench/data/real-<n>.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import re
import sys
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea-r4"
DATA_DIR = BENCH / "data"
PATIENT_ID = "real-patient"
OBSERVATION_CATEGORIES = {"vital-signs", "survey", "exam"}
_DATE = re.compile(r"^(\d{4})(-\d{2}-\d{2}.*)$")
_SCT, _ICD10CM = "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
_CLINICAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
_CONFIRMED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}


@cache
def charts() -> list[dict[str, list[dict[str, Any]]]]:
    """Each Synthea chart's resources by type, in file-name order."""
    out = []
    for path in sorted(SYNTHEA.glob("*.json")):
        bundle = json.loads(path.read_text())
        by_type: dict[str, list[dict[str, Any]]] = {}
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            by_type.setdefault(resource["resourceType"], []).append(resource)
        out.append(by_type)
    if not out:
        raise SystemExit(f"no Synthea charts in {SYNTHEA}")
    return out


def _is_prefetched_observation(resource: dict[str, Any]) -> bool:
    codes = {c.get("code") for cat in resource.get("category", []) for c in cat.get("coding", [])}
    return bool(codes & OBSERVATION_CATEGORIES)


def _shifted(value: Any, years: int) -> Any:
    """Every date-like string moved back by `years` (Feb 29 becomes Feb 28)."""
    if isinstance(value, dict):
        return {k: _shifted(v, years) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, years) for v in value]
    if isinstance(value, str) and years and (m := _DATE.match(value)):
        shifted = f"{int(m.group(1)) - years:04d}{m.group(2)}"
        return shifted.replace("-02-29", "-02-28")
    return value


def _pool(kind: str, pick: Any) -> list[dict[str, Any]]:
    return [r for chart in charts() for r in chart.get(kind, []) if pick(r)]


def _take(pool: list[dict[str, Any]], count: int) -> Iterator[dict[str, Any]]:
    """`count` resources from `pool`, repeating it (older, with new ids) as often as needed."""
    for i in range(count):
        cycle, resource = divmod(i, len(pool))
        copied = _shifted(copy.deepcopy(pool[resource]), 3 * cycle)
        copied["id"] = f"{copied['id']}-r{cycle}" if cycle else copied["id"]
        copied["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
        yield copied


def _added_conditions(anchor: dt.date) -> list[dict[str, Any]]:
    def condition(cid: str, codings: list[dict[str, str]], text: str, onset: dt.date) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "id": cid,
            "clinicalStatus": _CLINICAL,
            "verificationStatus": _CONFIRMED,
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "encounter-diagnosis",
                        }
                    ]
                }
            ],
            "code": {"coding": codings, "text": text},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "onsetDateTime": onset.isoformat(),
            "recordedDate": onset.isoformat(),
        }

    return [
        condition(
            "real-ms",
            [
                {"system": _SCT, "code": "24700007", "display": "Multiple sclerosis"},
                {"system": _ICD10CM, "code": "G35", "display": "Multiple sclerosis"},
            ],
            "Multiple sclerosis",
            dt.date(2015, 3, 1),
        ),
        condition(
            "real-lbp",
            [{"system": _SCT, "code": "279039007", "display": "Low back pain"}],
            "Low back pain",
            anchor - dt.timedelta(days=36),
        ),
        condition(
            "real-paraparesis",
            [{"system": _SCT, "code": "1845001", "display": "Paraparesis"}],
            "Paraparesis, new",
            anchor - dt.timedelta(days=15),
        ),
    ]


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
        ],
    }


def build_request(size: int, anchor: dt.date) -> dict[str, Any]:
    """A patient-view request whose prefetch holds `size` resources (at least 10)."""
    first = charts()[0]
    patient = copy.deepcopy(first["Patient"][0])
    patient["id"] = PATIENT_ID
    added = _added_conditions(anchor)
    rest = size - 1 - len(added)
    n_conditions = max(2, rest * 3 // 100)
    n_medications = max(1, rest * 2 // 100)
    n_observations = rest - n_conditions - n_medications
    conditions = list(_take(_pool("Condition", lambda r: True), n_conditions)) + added
    medications = list(_take(_pool("MedicationRequest", lambda r: True), n_medications))
    observations = list(_take(_pool("Observation", _is_prefetched_observation), n_observations))
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"real-shaped-{size}")),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/example-neurologist", "patientId": PATIENT_ID},
        "prefetch": {
            "patient": patient,
            "conditions": _bundle(conditions),
            "observations": _bundle(observations),
            "imagingStudies": _bundle([]),
            "medications": _bundle(medications),
            "medicationStatements": _bundle([]),
        },
    }


def file_for(size: int, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / f"real-{size}.json"


def write(sizes: list[int], anchor: dt.date, data_dir: Path = DATA_DIR) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for size in sizes:
        body = json.dumps(build_request(size, anchor), separators=(",", ":")).encode()
        file_for(size, data_dir).write_bytes(body)
        files[str(size)] = {"path": file_for(size, data_dir).name, "bytes": len(body)}
    manifest = {"anchor": anchor.isoformat(), "files": files, "expected_indicator": "critical"}
    (data_dir / "real-manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--anchor", type=dt.date.fromisoformat, default=None, help="'today', YYYY-MM-DD")
    args = parser.parse_args(argv)
    anchor = args.anchor or dt.datetime.now(dt.UTC).date()
    for size, info in write(args.sizes, anchor)["files"].items():
        print(f"  bench/data/{info['path']}: {size} resources, {info['bytes'] / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
