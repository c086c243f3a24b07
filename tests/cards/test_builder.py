"""The patient-view card as a clinician reads it: short, the evidence in clinical words with labelled
dates and each fact once, what to do now by level, management only for the mechanism found, never an
id, a raw code or a code-system name. Every card of every fixture of every hook is checked; named
scenarios are checked line by line."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from fastapi.testclient import TestClient

from cds_service.cards.builder import CardContext, build_card
from cds_service.cards.content import load_card_content
from cds_service.cards.detail import MAX_DETAIL
from cds_service.clinical.decision import decide
from cds_service.clinical.extract import extract_facts
from cds_service.clinical.facts import ClinicalFacts, Evidence, Finding
from tests.cards.scenarios import (
    FHIR_REFERENCE,
    LABELLED_DATE,
    SYSTEM_NAMES,
    Emitted,
    card_texts,
    emitted_cards,
    request_ids_and_codes,
    why_lines,
    word,
)
from tests.conftest import NOW, SERVICE_URL, load_fixture

URGENT_SUMMARY = "MS with back pain and new neurological deficit: evaluate now / same day for spinal cord involvement"
NEUROPATHIC = "- **Central neuropathic pain:** gabapentinoid, SNRI or TCA, titrated carefully (evidence is limited)."
SPASTICITY = "- **Spasticity / painful spasms:** stretching, physiotherapy; baclofen or tizanidine."
MUSCULOSKELETAL = "- **Musculoskeletal strain:** rehabilitation, posture training, core strengthening, activity pacing."
MANAGEMENT_WORDS = ("gabapentinoid", "SNRI", "baclofen", "tizanidine", "rehabilitation", "physiotherapy")


@pytest.fixture(scope="module")
def emitted(client: TestClient) -> list[Emitted]:
    cards = emitted_cards(client)
    # 34 patient-view cards (the other fixtures give none, or a 412; the two visit-reason fixtures give one
    # now that the service reads the visit), 14 order cards
    assert len(cards) == 48
    return cards


def _card(client: TestClient, name: str) -> dict:
    (card,) = client.post(SERVICE_URL, json=load_fixture(name)).json()["cards"]
    return card


# --- every card of every fixture ------------------------------------------------------------------


def test_every_detail_is_short(emitted: list[Emitted]) -> None:
    for item in emitted:
        assert len(item.card["detail"]) <= MAX_DETAIL, (item.fixture, len(item.card["detail"]))
        assert len(item.card["summary"]) < 140


def test_no_card_text_names_an_id_a_raw_code_or_a_code_system(emitted: list[Emitted]) -> None:
    for item in emitted:
        ids, codes = request_ids_and_codes(item.request)
        for text in card_texts(item.card):
            assert not FHIR_REFERENCE.search(text), (item.fixture, text)
            assert not SYSTEM_NAMES.search(text), (item.fixture, text)
            for token in ids | codes:
                assert not word(token).search(text), (item.fixture, token, text)


def test_every_evidence_line_has_where_and_a_labelled_date(emitted: list[Emitted]) -> None:
    for item in emitted:
        lines = why_lines(item.card["detail"])
        assert len(lines) >= 2, item.fixture  # at least MS and back pain
        for line in lines:
            assert line.startswith("- ") and LABELLED_DATE.search(line), (item.fixture, line)


def test_each_fact_once(emitted: list[Emitted]) -> None:
    for item in emitted:
        lines = why_lines(item.card["detail"])
        assert len(lines) == len(set(lines)), item.fixture
        ms = [line for line in lines if "multiple sclerosis" in line.lower() and "**" not in line]
        assert len(ms) == 1, (item.fixture, lines)


def test_every_card_links_the_guidance_first(emitted: list[Emitted]) -> None:
    for item in emitted:
        first = item.card["links"][0]
        assert first == {
            "label": "Full guidance: MS-related vs mechanical vs radicular back pain",
            "url": "http://testserver/guidance/ms-back-pain",
            "type": "absolute",
        }, item.fixture


def test_no_management_and_no_dual_causes_on_a_critical_card(emitted: list[Emitted]) -> None:
    critical = [item for item in emitted if item.card["indicator"] == "critical"]
    assert len(critical) == 4
    for item in critical:
        detail = item.card["detail"]
        assert item.card["summary"] == URGENT_SUMMARY
        assert "**Evaluate now / same day:** immediate neurological evaluation is reasonable" in detail
        assert not any(w.lower() in detail.lower() for w in MANAGEMENT_WORDS), item.fixture
        assert "dual causes" not in detail


# --- named scenarios, line by line ----------------------------------------------------------------


def test_urgent_new_paraparesis(client: TestClient) -> None:
    card = _card(client, "urgent-new-paraparesis")
    assert card["indicator"] == "critical"
    assert card["detail"].split("\n\n")[:2] == [
        "New neurological symptoms with back pain in MS can signal active spinal cord involvement.",
        "**Evaluate now / same day:** immediate neurological evaluation is reasonable for back pain with new "
        "neurological symptoms. Spinal MRI (cervical and thoracic, without and with contrast) belongs to that work-up.",
    ]
    assert why_lines(card["detail"]) == [
        "- Multiple sclerosis (problem list, since 1 Mar 2015)",
        "- Low back pain (encounter diagnosis, since 20 Oct 2026)",
        "- **New:** Paraparesis (encounter diagnosis, since 10 Nov 2026)",
    ]
    # weakness is documented, so it is not asked about again; the rest are
    assert (
        "**Worth asking about:** Lhermitte's sign (shock down the spine on neck flexion); paroxysmal spasms without "
        "a mechanical trigger; response to rest and NSAIDs; new bladder or bowel change; non-dermatomal sensory "
        "change." in card["detail"]
    )


def test_urgent_bilateral_numbness_from_an_observation(client: TestClient) -> None:
    card = _card(client, "urgent-observation-numbness")
    assert why_lines(card["detail"]) == [
        "- Relapsing remitting multiple sclerosis (problem list, since 1 May 2012)",
        "- Chief complaint: Low back pain for 3 weeks (observation, observed 20 Nov 2026)",
        "- **New:** Numbness of lower limb, bilateral (observation, observed 20 Nov 2026)",
    ]


def test_red_flag_newer_than_the_recent_mri(client: TestClient) -> None:
    card = _card(client, "recent-mri-older-than-new-red-flag")
    assert (
        "A spinal MRI was done on 1 Sep 2026, but **paresthesia began after it**: a new study is suggested."
        in (card["detail"])
    )
    assert "- **New:** Paresthesia, bilateral (encounter diagnosis, since 12 Nov 2026)" in why_lines(card["detail"])


@pytest.mark.parametrize(
    ("name", "management"),
    [
        ("cord-features-lhermitte-text", [NEUROPATHIC]),
        ("cord-features-central-pain-g89", [NEUROPATHIC]),
        ("cord-features-spasticity", [SPASTICITY]),
        ("cord-features-paroxysmal-spasms", [NEUROPATHIC]),  # paroxysmal central pain [2]
        ("cord-features-ms-spinal-cord", []),  # cord involvement, no pain mechanism shown
        ("cord-features-no-relief-text", []),
        ("baseline-ms-back-pain", []),
        ("baseline-dual-cause-mechanical", [MUSCULOSKELETAL]),
    ],
)
def test_management_only_for_the_mechanism_found(client: TestClient, name: str, management: list[str]) -> None:
    detail = _card(client, name)["detail"]
    shown = [line for line in detail.splitlines() if line in (NEUROPATHIC, SPASTICITY, MUSCULOSKELETAL)]
    assert shown == management


def test_cord_features_lhermitte(client: TestClient) -> None:
    card = _card(client, "cord-features-lhermitte-text")
    assert card["indicator"] == "warning"
    assert card["detail"].split("\n\n")[:2] == [
        "The back pain has features that point to a central (spinal cord) origin rather than a purely mechanical "
        "cause.",
        "**Now:** neurological review; consider cervical and thoracic spinal MRI without and with contrast.",
    ]
    assert why_lines(card["detail"]) == [
        "- Multiple sclerosis (problem list, since 1 Feb 2019)",
        "- **Back pain:** Backache (problem list, since 15 Sep 2026)",
        "- Lhermitte's sign - electric shock down spine on neck flexion (problem list, recorded 1 Jun 2026)",
    ]
    assert "Lhermitte's sign (shock" not in card["detail"]  # documented, so not asked about


def test_poor_nsaid_response_is_told_once_with_the_drug(client: TestClient) -> None:
    card = _card(client, "cord-features-nsaid-statement-naproxen")
    assert why_lines(card["detail"])[2] == (
        "- **Poor response to NSAIDs / rest:** NSAID for 14 days or more: Naproxen sodium "
        "(medication list, started 10 Oct 2026)"
    )
    assert "response to rest and NSAIDs" not in card["detail"]  # documented, so not asked about


def test_baseline_dual_cause(client: TestClient) -> None:
    card = _card(client, "baseline-dual-cause-mechanical")
    assert card["indicator"] == "info"
    assert why_lines(card["detail"]) == [
        "- Multiple sclerosis (problem list, since 1 Apr 2014)",
        "- Mechanical low back pain (encounter diagnosis, since 8 Nov 2026)",  # back pain and its pattern: once
    ]
    assert (
        "**Consider dual causes:** the pain also has a mechanical pattern; ordinary mechanical back pain can "
        "coexist with MS." in card["detail"]
    )


def test_recent_mri_is_named_by_region_and_date(client: TestClient) -> None:
    card = _card(client, "recent-mri-covers-cord")
    assert "suggestions" not in card
    assert (
        "**Review the recent MRI:** MRI cervical and thoracic spine (imaging study, performed 15 Oct 2026) covered "
        "the cervical and thoracic cord; no new order is suggested." in card["detail"]
    )


def test_lumbar_only_mri_is_named_by_region(client: TestClient) -> None:
    detail = _card(client, "lumbar-only-mri")["detail"]
    assert "The recent MRI lumbar spine (imaging study, performed 20 Oct 2026) did not image the cervical and" in (
        detail
    )


def test_missing_date_says_so() -> None:
    content = load_card_content()
    facts = ClinicalFacts(
        now=NOW.date(),
        multiple_sclerosis=(
            Finding(
                "multiple_sclerosis",
                "Multiple sclerosis",
                Evidence("Condition", "c1", "SNOMED CT 24700007 Multiple sclerosis", None, "problem list", ""),
            ),
        ),
        back_pain=(
            Finding(
                "back_pain",
                "Back pain",
                Evidence("Condition", "c2", "SNOMED CT 279039007 Low back pain", NOW.date(), "problem list", "since"),
            ),
        ),
    )
    card = build_card(decide(facts), content, CardContext("p1", None, NOW))
    assert card is not None and why_lines(card.detail or "") == [
        "- Multiple sclerosis (problem list, date not recorded)",
        "- Low back pain (problem list, since 25 Nov 2026)",
    ]
    assert card.links and card.links[0].url.startswith("https://doi.org/")  # no base URL: no guidance link


def test_a_crowded_chart_still_gives_a_short_card() -> None:
    """Twenty new red flags of ten kinds: the card stays within its length, the first findings first."""
    content = load_card_content()
    day = NOW.date() - dt.timedelta(days=3)

    def finding(concept: str, label: str, index: int) -> Finding:
        ev = Evidence("Condition", f"rf{index}", f'text "{label} with a long free-text description {index}"', day)
        return Finding(concept, label, dataclass_where(ev), "motor")

    def dataclass_where(ev: Evidence) -> Evidence:
        return Evidence(ev.resource_type, ev.resource_id, ev.matched, ev.date, "problem list", "since")

    flags = tuple(finding(f"flag{i % 10}", f"Deficit kind {i % 10}", i) for i in range(20))
    facts = ClinicalFacts(
        now=NOW.date(),
        multiple_sclerosis=(finding("multiple_sclerosis", "Multiple sclerosis", 100),),
        back_pain=(finding("back_pain", "Back pain", 101),),
        new_red_flags=flags,
    )
    card = build_card(decide(facts), content, CardContext("p1", None, NOW, base_url="https://cds.example.org"))
    assert card is not None and card.detail is not None
    assert len(card.detail) <= MAX_DETAIL
    lines = why_lines(card.detail)
    assert lines[0].startswith("- Multiple sclerosis with a long")
    assert lines[-1].startswith("- and ") and lines[-1].endswith(" more in the chart")
    hidden = int(lines[-1].split()[2])
    assert len(lines) - 1 + hidden == 12  # MS, back pain and one line per kind of deficit (10)


def test_the_quieted_card_names_the_override_by_its_display(tmp_path) -> None:
    """The client sends only the code (as the CDS Hooks sandbox does): the card shows our display."""
    from cds_service.app import create_app
    from cds_service.storage.settings import StorageSettings
    from tests.conftest import NO_AUTH

    storage = StorageSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/cds.db", patient_hash_key="k" * 40)
    with TestClient(create_app(clock=lambda: NOW, auth=NO_AUTH, storage=storage)) as client:
        request = load_fixture("urgent-new-paraparesis")
        first = client.post(SERVICE_URL, json=request).json()["cards"][0]
        feedback = {
            "card": first["uuid"],
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"system": "urn:ms-back-pain-cds:override-reason", "code": "already-evaluated"}
            },
            "outcomeTimestamp": (NOW - dt.timedelta(hours=1)).isoformat(),
        }
        assert client.post(SERVICE_URL + "/feedback", json={"feedback": [feedback]}).status_code == 200
        second = client.post(SERVICE_URL, json=copy.deepcopy(request)).json()["cards"][0]
    assert second["indicator"] == "info"
    assert (
        "_Shown as information: overridden on 25 Nov 2026 (Already evaluated), and no new red flag since._"
        in second["detail"]
    )
    assert "already-evaluated" not in second["detail"]


def test_visit_reason_is_told_as_such_and_named_by_code_in_the_order() -> None:
    """The visit's reason (an Encounter, as Epic carries a chief complaint): "visit reason" on the card,
    and in the suggested orders a reasonCode (R4 allows no Encounter in reasonReference). Decided in the
    core: the service does not ask for the `encounter` prefetch key yet."""
    from cds_service.fhir.prefetch import read_prefetch
    from cds_service.services.patient_data import WANTED_TYPES

    request = load_fixture("visit-reason-back-pain")
    context = request["context"]
    data = read_prefetch(
        request["prefetch"], list(request["prefetch"]), context["patientId"], WANTED_TYPES | {"Encounter"}
    )
    facts = extract_facts(data.all_resources(), NOW.date(), encounter_id=context["encounterId"])
    card = build_card(decide(facts), load_card_content(), CardContext(context["patientId"], context["userId"], NOW))
    assert card is not None and card.detail is not None and card.suggestions
    (back_pain,) = [line for line in why_lines(card.detail) if "visit reason" in line]
    assert back_pain == "- Low back pain (visit reason, recorded 25 Nov 2026)"
    for action in card.suggestions[0].actions or []:
        order = action.resource or {}
        assert {ref["reference"].split("/")[0] for ref in order.get("reasonReference", [])} <= {"Condition"}
        assert order["reasonCode"] == [
            {
                "text": "Low back pain",
                "coding": [{"system": "http://snomed.info/sct", "code": "279039007", "display": "Low back pain"}],
            }
        ]
