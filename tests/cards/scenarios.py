"""Every card the service emits for every fixture request of every hook, and what a card's text must
never contain: FHIR ids, raw codes or code-system names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ROOT

FIXTURE_DIRS = (ROOT / "fixtures" / "patient-view", ROOT / "fixtures" / "order-entry")
SERVICE = {
    "patient-view": "/cds-services/ms-back-pain-patient-view",
    "order-select": "/cds-services/ms-back-pain-order-select",
    "order-sign": "/cds-services/ms-back-pain-order-sign",
}
TERMINOLOGIES = ("snomed", "loinc", "icd", "rxnorm", "cpt", "ama-assn", "urn:oid")
SYSTEM_NAMES = re.compile(r"SNOMED|LOINC|RxNorm|ICD-?10|\bCPT\b|DICOM|https?://(?!\S*guidance)|urn:", re.IGNORECASE)
FHIR_REFERENCE = re.compile(
    r"\b(?:Condition|Observation|Encounter|Medication(?:Request|Statement)?|ServiceRequest|ImagingStudy|"
    r"DiagnosticReport|Procedure|Patient|Practitioner|DocumentReference)/"
)
MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
WHERE = (
    "problem list|encounter diagnosis|health concern|condition record|visit reason|order reason|radiology report|"
    "procedure record|imaging study|observation|medication list"
)
LABELLED_DATE = re.compile(
    rf"\((?:{WHERE}), (?:(?:since|recorded|observed|started|ordered|performed|reported) \d{{1,2}} (?:{MONTHS}) "
    r"\d{4}|date not recorded)\)$"
)


@dataclass(frozen=True)
class Emitted:
    fixture: str
    hook: str
    request: dict[str, Any]
    card: dict[str, Any]


def fixture_requests() -> Iterator[tuple[str, dict[str, Any]]]:
    for folder in FIXTURE_DIRS:
        for path in sorted(folder.glob("*.json")):
            if path.name != "expected.json":
                yield path.stem, json.loads(path.read_text())


def emitted_cards(client: TestClient) -> list[Emitted]:
    out: list[Emitted] = []
    for name, request in fixture_requests():
        response = client.post(SERVICE[request["hook"]], json=request)
        if response.status_code != 200:
            continue
        out += [Emitted(name, request["hook"], request, card) for card in response.json()["cards"]]
    return out


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def request_ids_and_codes(request: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The resource ids and the terminology codes (those with a digit) a request carries."""
    ids, codes = set(), set()
    for node in _walk(request):
        if isinstance(node.get("resourceType"), str) and isinstance(node.get("id"), str):
            ids.add(node["id"])
        system, code = node.get("system"), node.get("code")
        if isinstance(system, str) and any(t in system.lower() for t in TERMINOLOGIES):
            if isinstance(code, str | int) and re.search(r"\d", str(code)):
                codes.add(str(code))
    return ids, codes


def card_texts(card: dict[str, Any]) -> list[str]:
    """Everything a clinician reads on a card."""
    texts = [card["summary"], card.get("detail", ""), card["source"]["label"]]
    for suggestion in card.get("suggestions", []):
        texts.append(suggestion["label"])
        texts += [action["description"] for action in suggestion.get("actions", [])]
    texts += [link["label"] for link in card.get("links", [])]
    return texts


def why_lines(detail: str) -> list[str]:
    return detail.split("**Why**\n", 1)[1].split("\n\n", 1)[0].splitlines()


def word(token: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.-]){re.escape(token)}(?![\w-])")
